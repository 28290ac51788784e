"""Holdout metrics, named as the environment files name them (e.g. `roc_auc >= 0.85`)."""

from __future__ import annotations

import numpy as np


def holdout_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    from sklearn import metrics as skm  # imported in the sidecar, not by the boosting process

    predicted = (scores >= threshold).astype(int)
    return {
        "roc_auc": float(skm.roc_auc_score(labels, scores)),
        "pr_auc": float(skm.average_precision_score(labels, scores)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "log_loss": float(skm.log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }
