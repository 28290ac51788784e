"""The holdout metrics and curves (NumPy) give scikit-learn's figures, ties and edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
from modelyard.ml.training import evaluation
from sklearn import metrics as skm


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 5000)
    smooth = np.clip(labels * 0.3 + rng.normal(0.35, 0.2, 5000), 0, 1)
    return [
        ("continuous scores", labels, smooth),
        ("heavy ties", labels, np.round(smooth, 1)),  # ties across both classes
        ("rare positives", (rng.random(5000) < 0.02).astype(int), rng.random(5000)),
        ("perfect ranking", np.r_[np.zeros(50, int), np.ones(50, int)], np.linspace(0, 1, 100)),
        ("all one score", np.r_[np.zeros(30, int), np.ones(70, int)], np.full(100, 0.5)),
    ]


@pytest.mark.parametrize(("name", "labels", "scores"), _cases(), ids=[c[0] for c in _cases()])
def test_holdout_metrics_match_scikit_learn(
    name: str, labels: np.ndarray, scores: np.ndarray
) -> None:
    got = evaluation.holdout_metrics(labels, scores)
    predicted = (scores >= 0.5).astype(int)
    expected = {
        "roc_auc": skm.roc_auc_score(labels, scores),
        "pr_auc": skm.average_precision_score(labels, scores),
        "accuracy": skm.accuracy_score(labels, predicted),
        "f1": skm.f1_score(labels, predicted, zero_division=0),
        "precision": skm.precision_score(labels, predicted, zero_division=0),
        "recall": skm.recall_score(labels, predicted, zero_division=0),
        "log_loss": skm.log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1]),
    }
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("name", "labels", "scores"), _cases(), ids=[c[0] for c in _cases()])
def test_curves_match_scikit_learn(name: str, labels: np.ndarray, scores: np.ndarray) -> None:
    counts = evaluation.threshold_counts(labels, scores)
    fpr, tpr = evaluation.roc_points(counts)
    sk_fpr, sk_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=True)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    # scikit-learn lists the PR curve from the lowest threshold up and closes it at (0, 1).
    recall, precision = evaluation.pr_points(counts)
    sk_precision, sk_recall, _ = skm.precision_recall_curve(labels, scores, drop_intermediate=True)
    np.testing.assert_allclose(recall, sk_recall[-2::-1])
    np.testing.assert_allclose(precision, sk_precision[-2::-1])
    np.testing.assert_array_equal(
        evaluation.confusion_matrix(labels, scores >= 0.5),
        skm.confusion_matrix(labels, (scores >= 0.5).astype(int), labels=[0, 1]),
    )
