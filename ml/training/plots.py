"""The pictures people look at before they read numbers: importance, then per task ROC, PR and
the confusion matrix (binary), the confusion matrix (multiclass), predicted against actual and the
residuals (regression).

Drawn in the training job's sidecar process (ml/training/sidecar.py), from the curves
ml/training/evaluation.py computes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from modelyard.ml.training import evaluation

if TYPE_CHECKING:
    from modelyard.ml.prediction_kind import PredictionKind

Save = Callable[[Any, str], None]  # a figure and its file name


def write_plots(
    importances: dict[str, float],
    kind: PredictionKind,
    labels: np.ndarray,
    scores: np.ndarray,
    folder: Path,
) -> list[Path]:
    """`importances`: total gain per feature name; `labels` and `scores`: the holdout's."""
    load_matplotlib()
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    gains = np.array(list(importances.values()), dtype=float)
    order = np.argsort(gains)[-20:]
    names = np.array(list(importances))[order]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    ax.barh(names, gains[order], color="#3b7dd8")
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance")
    save(fig, "feature_importance.png")
    if kind.task == "multiclass":
        _confusion(kind.classes, labels, scores.argmax(axis=1), "Confusion matrix (holdout)", save)
        return written
    if kind.task == "regression":
        _regression(labels, scores, save)
        return written

    counts = evaluation.threshold_counts(labels, scores)
    fpr, tpr = evaluation.roc_points(counts)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {evaluation.roc_auc(counts):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (holdout)")
    ax.legend(loc="lower right")
    save(fig, "roc_curve.png")

    # Points where the curve bends only: a million-point line draws slowly and looks the same.
    recall, precision = evaluation.pr_points(counts)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"AP {evaluation.average_precision(counts):.3f}")
    ax.axhline(labels.mean(), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (holdout)")
    ax.legend(loc="upper right")
    save(fig, "precision_recall_curve.png")

    _confusion(
        kind.classes or ("0", "1"), labels, scores >= 0.5, "Confusion matrix (threshold 0.5)", save
    )
    return written


def _confusion(
    classes: tuple[str, ...], labels: np.ndarray, predicted: np.ndarray, title: str, save: Save
) -> None:
    import matplotlib.pyplot as plt

    k = len(classes)
    cells = np.asarray(labels).astype(np.int64) * k + np.asarray(predicted).astype(np.int64)
    matrix = np.bincount(cells, minlength=k * k).reshape(k, k)
    size = max(4, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="actual", title=title)  # fmt: skip
    save(fig, "confusion_matrix.png")


def _regression(values: np.ndarray, predicted: np.ndarray, save: Save) -> None:
    import matplotlib.pyplot as plt

    # A few thousand points show the shape; a million draw slowly and look the same.
    shown = np.random.default_rng(0).permutation(len(values))[:5000]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(values[shown], predicted[shown], s=4, alpha=0.4, color="#3b7dd8")
    low, high = float(np.min(values)), float(np.max(values))
    ax.plot([low, high], [low, high], linestyle="--", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted against actual (holdout)")
    save(fig, "predicted_vs_actual.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(predicted - values, bins=50, color="#3b7dd8")
    ax.set(xlabel="predicted - actual", ylabel="rows", title="Residuals (holdout)")
    save(fig, "residuals.png")


def load_matplotlib() -> None:
    """Import matplotlib, for files only (about a second of one core): the sidecar does it while
    the training process scores the holdout, before it is asked for the plots."""
    import matplotlib

    matplotlib.use("Agg")  # never a window
    import matplotlib.pyplot
