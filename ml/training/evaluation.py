"""Holdout metrics of each task (contracts/tasks.py), named as the environment files name them
(e.g. `roc_auc >= 0.85`, `rmse <= 3.5`), and the curves the plots draw.

Written with NumPy rather than taken from scikit-learn on purpose: importing scikit-learn loads
SciPy's statistics (about two seconds of one core), which a training job would pay between the
end of boosting and its result. The definitions are scikit-learn's, and tests/ml/test_evaluation.py
checks every figure against scikit-learn on data with ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from modelyard.contracts.tasks import Task

LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class ThresholdCounts:
    """True and false positives when every score at or above a threshold is called positive,
    for each distinct score as the threshold, from the highest down."""

    tps: np.ndarray
    fps: np.ndarray

    @property
    def positives(self) -> int:
        return int(self.tps[-1])

    @property
    def negatives(self) -> int:
        return int(self.fps[-1])


def threshold_counts(labels: np.ndarray, scores: np.ndarray) -> ThresholdCounts:
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked, hits = np.asarray(scores)[order], np.asarray(labels)[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits, dtype=np.int64)[last_of_each]
    return ThresholdCounts(tps, 1 + last_of_each - tps)


def roc_points(counts: ThresholdCounts) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates from (0, 0) to (1, 1), corners only: points on a straight
    stretch of the curve are dropped, as scikit-learn's `drop_intermediate` does."""
    fps, tps = counts.fps, counts.tps
    if len(fps) > 2:
        corners = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[corners], tps[corners]
    return np.r_[0, fps] / max(counts.negatives, 1), np.r_[0, tps] / max(counts.positives, 1)


def pr_points(counts: ThresholdCounts) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision, from the highest threshold down, with thresholds that change
    neither dropped (scikit-learn's `precision_recall_curve(..., drop_intermediate=True)`)."""
    tps, fps = counts.tps, counts.fps
    if len(tps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True]
        tps, fps = tps[keep], fps[keep]
    return tps / max(counts.positives, 1), tps / (tps + fps)


def roc_auc(counts: ThresholdCounts) -> float:
    fpr, tpr = roc_points(counts)
    return float(np.trapezoid(tpr, fpr))


def average_precision(counts: ThresholdCounts) -> float:
    """The precision at each threshold, weighted by the recall it adds."""
    recall = counts.tps / max(counts.positives, 1)
    precision = counts.tps / (counts.tps + counts.fps)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[[true negatives, false positives], [false negatives, true positives]]."""
    cells = np.asarray(labels).astype(np.int64) * 2 + np.asarray(predicted).astype(np.int64)
    return np.bincount(cells, minlength=4).reshape(2, 2)


def holdout_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Binary `labels` (0/1) against predicted probabilities of class 1."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    counts = threshold_counts(labels, scores)
    (tn, fp), (fn, tp) = confusion_matrix(labels, scores >= threshold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    clipped = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_loss = -np.mean(np.where(labels == 1, np.log(clipped), np.log1p(-clipped)))
    return {
        "roc_auc": roc_auc(counts),
        "pr_auc": average_precision(counts),
        "accuracy": float((tp + tn) / len(labels)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "log_loss": float(log_loss),
    }


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Class codes 0..K-1 against a row of K class probabilities per row."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    matrix = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    hits, actual, called = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    present = actual > 0  # scikit-learn's balanced accuracy averages the classes present
    recall = np.divide(hits, actual, out=np.zeros(k), where=present)
    f1 = np.divide(2 * hits, actual + called, out=np.zeros(k), where=actual + called > 0)
    # scikit-learn's macro F1 averages the classes seen in the labels or the predictions.
    seen = (actual + called) > 0
    picked = np.clip(probabilities[np.arange(len(labels)), labels], LOG_LOSS_EPS, None)
    # scikit-learn renormalises each row before the loss; LightGBM's rows already sum to 1.
    picked = picked / probabilities.sum(axis=1)
    return {
        "accuracy": float(hits.sum() / len(labels)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[seen].mean()),
        "log_loss": float(-np.mean(np.log(picked))),
    }


def regression_metrics(values: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(predicted, dtype=np.float64) - values
    spread = float(np.sum((values - values.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - float(np.sum(errors**2)) / spread if spread else 0.0,
    }


def task_metrics(task: Task, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The holdout metrics of a `task` model: the names contracts/tasks.py lists for it."""
    if task == "multiclass":
        return multiclass_metrics(labels, predictions)
    if task == "regression":
        return regression_metrics(labels, predictions)
    return holdout_metrics(labels, predictions)
