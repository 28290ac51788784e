"""Shares of rows per bin: the reference profile (training) and live traffic (the server) count
them the same way. numpy only: the training path must not import scipy (drift.py's), and the
serving image has no pandas."""

from __future__ import annotations

import numpy as np


def bin_shares(present: np.ndarray, edges: np.ndarray, total: int) -> np.ndarray:
    """Share of all `total` rows falling in each bin (-inf, e0], (e0, e1], ..., (eN, inf)."""
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return counts / total if total else counts.astype(float)
