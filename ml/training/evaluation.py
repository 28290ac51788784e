"""Holdout metrics, named as the environment files name them (e.g. `roc_auc >= 0.85`)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss")
# The LightGBM validation metric that tracks each gate metric during boosting.
EARLY_STOPPING_METRIC = {"roc_auc": "auc", "pr_auc": "average_precision"}


def holdout_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
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
