"""The pictures people look at before they read numbers: importance, ROC, PR, confusion matrix.

Drawn in the training job's sidecar process (ml/training/sidecar.py), from the curves
ml/training/evaluation.py computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from modelyard.ml.training import evaluation


def write_plots(
    importances: dict[str, float], labels: np.ndarray, scores: np.ndarray, folder: Path
) -> list[Path]:
    """`importances`: total gain per feature name."""
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

    matrix = evaluation.confusion_matrix(labels, scores >= 0.5)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual",
           title="Confusion matrix (threshold 0.5)")  # fmt: skip
    save(fig, "confusion_matrix.png")
    return written


def load_matplotlib() -> None:
    """Import matplotlib, for files only (about a second of one core): the sidecar does it while
    the training process scores the holdout, before it is asked for the plots."""
    import matplotlib

    matplotlib.use("Agg")  # never a window
    import matplotlib.pyplot
