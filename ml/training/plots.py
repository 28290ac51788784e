"""The pictures people look at before they read numbers: importance, ROC, PR, confusion matrix.

They are drawn in a worker process started when training starts: importing matplotlib and
scikit-learn and drawing take seconds of one core, which then overlap the single-threaded
data checks before boosting and the model logging after it, instead of adding to them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType

import numpy as np


class PlotWorker:
    """One spawned process (fork is unsafe after LightGBM's OpenMP threads exist) that imports
    the plotting libraries at once and draws when asked."""

    def __enter__(self) -> PlotWorker:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            1, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
        )
        self._pool.submit(int)  # the pool starts its process on the first task: start it now
        return self

    def draw(
        self,
        importances: dict[str, float],
        labels: np.ndarray,
        scores: np.ndarray,
        folder: Path,
    ) -> Future[list[Path]]:
        return self._pool.submit(write_plots, importances, labels, scores, folder)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=kind is None, cancel_futures=True)


def _start_worker(parent: int) -> None:
    # A training killed with SIGKILL can't shut the pool down: the worker leaves on its own.
    def leave_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=leave_when_orphaned, daemon=True).start()
    _import_libraries()


def _import_libraries() -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot
    import sklearn.metrics  # noqa: F401


def write_plots(
    importances: dict[str, float], labels: np.ndarray, scores: np.ndarray, folder: Path
) -> list[Path]:
    """`importances`: total gain per feature name."""
    _import_libraries()
    import matplotlib.pyplot as plt
    from sklearn import metrics as skm

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

    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {skm.auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (holdout)")
    ax.legend(loc="lower right")
    save(fig, "roc_curve.png")

    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"AP {skm.average_precision_score(labels, scores):.3f}")
    ax.axhline(labels.mean(), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (holdout)")
    ax.legend(loc="upper right")
    save(fig, "precision_recall_curve.png")

    matrix = skm.confusion_matrix(labels, (scores >= 0.5).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual",
           title="Confusion matrix (threshold 0.5)")  # fmt: skip
    save(fig, "confusion_matrix.png")
    return written
