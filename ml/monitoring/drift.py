"""Live traffic against the reference profile: PSI and a KS (numeric) or chi-square
(categorical) test per feature, and the same for the predictions."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from modelyard.ml.monitoring.bins import bin_shares
from scipy import stats

EPS = 1e-4
OTHER = "(unseen)"
MISSING = "(missing)"


@dataclass
class FeatureDrift:
    name: str
    kind: str
    psi: float
    test: str
    statistic: float
    p_value: float
    drifted: bool
    labels: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    live: list[float] = field(default_factory=list)


@dataclass
class DriftResult:
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    psi_threshold: float
    p_value: float

    @property
    def drifted_features(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features) or bool(self.prediction and self.prediction.drifted)

    @property
    def max_psi(self) -> float:
        scores = [f.psi for f in self.features] + ([self.prediction.psi] if self.prediction else [])
        return max(scores, default=0.0)


def psi_from_counts(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.clip(e / e.sum(), EPS, None) if e.sum() else np.full_like(e, EPS)
    a = np.clip(a / a.sum(), EPS, None) if a.sum() else np.full_like(a, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def compare(
    profile: dict[str, Any],
    records: Iterable[dict[str, Any]],
    psi_threshold: float = 0.2,
    p_value: float = 0.01,
) -> DriftResult:
    """`records` are live samples: {"x": {feature: value}, "p": prediction}."""
    rows = list(records)
    features = []
    for name, ref in profile["features"].items():
        values = [r["x"].get(name) for r in rows]
        if ref["kind"] == "categorical":
            features.append(
                _categorical(name, ref, values, profile["rows"], psi_threshold, p_value)
            )
        else:
            features.append(_numeric(name, ref, values, psi_threshold, p_value))
    prediction = None
    if "prediction" in profile and rows:
        ref, values = profile["prediction"], [r.get("p") for r in rows]
        prediction = (
            _categorical("prediction", ref, values, profile["rows"], psi_threshold, p_value)
            if ref["kind"] == "categorical"
            else _numeric("prediction", ref, values, psi_threshold, p_value)
        )
    return DriftResult(len(rows), features, prediction, psi_threshold, p_value)


def _numeric(
    name: str, ref: dict[str, Any], values: list[Any], threshold: float, alpha: float
) -> FeatureDrift:
    live = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    present = live[~np.isnan(live)]
    edges = np.asarray(ref["edges"], dtype=float)
    live_shares = [
        *bin_shares(present, edges, len(live)).tolist(),
        1 - present.size / max(len(live), 1),
    ]
    ref_shares = [*ref["shares"], ref["missing"]]
    psi = psi_from_counts(ref_shares, live_shares)
    if present.size and ref["sample"]:
        statistic, p = stats.ks_2samp(np.asarray(ref["sample"]), present)
    else:
        statistic, p = 0.0, 1.0
    labels = [*_bin_labels(edges), MISSING]
    return FeatureDrift(
        name,
        "numeric",
        psi,
        "ks",
        float(statistic),
        float(p),
        psi >= threshold and p < alpha,
        labels,
        ref_shares,
        live_shares,
    )


def _categorical(
    name: str, ref: dict[str, Any], values: list[Any], ref_rows: int, threshold: float, alpha: float
) -> FeatureDrift:
    known = list(ref["frequencies"])
    seen = Counter(
        MISSING if v is None else (str(v) if str(v) in ref["frequencies"] else OTHER)
        for v in values
    )
    labels = [*known, OTHER, MISSING]
    ref_shares = [*(ref["frequencies"][k] for k in known), 0.0, ref["missing"]]
    live_counts = [float(seen.get(k, 0)) for k in labels]
    psi = psi_from_counts(ref_shares, live_counts)
    table = np.array([[s * ref_rows for s in ref_shares], live_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 1 and table[1].sum():
        statistic, p, _, _ = stats.chi2_contingency(table)
    else:
        statistic, p = 0.0, 1.0
    total = sum(live_counts) or 1.0
    return FeatureDrift(
        name,
        "categorical",
        psi,
        "chi2",
        float(statistic),
        float(p),
        psi >= threshold and p < alpha,
        labels,
        ref_shares,
        [c / total for c in live_counts],
    )


def _bin_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{e:.3g}" for e in edges), "inf"]
    return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)]
