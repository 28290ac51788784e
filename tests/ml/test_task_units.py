"""Binary, multiclass and regression, piece by piece: what the task is, the metrics (against
scikit-learn), the target checks and their messages, the gate an environment states per task,
and what a model's predictions look like to the server and the smoke test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelyard.ml.data.dataset import read_dataset
from modelyard.ml.data.tasks import infer_task
from modelyard.ml.data.validation import validate_dataset
from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.prediction_kind import PredictionKind
from modelyard.ml.training import evaluation
from modelyard.ml.training.choice import choose_model, choose_task
from modelyard.ml.training.features import prepare, strata, stratified_split
from sklearn import metrics as skm

from tests.helpers import edit_environment, run_cli


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["gold", "silver", "bronze"] * 40, "multiclass"),
        (["yes", "no"] * 60, "binary"),
        ([True, False] * 60, "binary"),
        ([0, 1] * 60, "binary"),
        ([1, 2, 3, 4, 5] * 40, "multiclass"),  # star ratings
        (list(np.linspace(0, 50, 120)), "regression"),
        (list(range(120)), "regression"),  # whole numbers, but a quantity
    ],
)
def test_the_task_is_inferred_from_the_target(values: list[object], task: str) -> None:
    assert infer_task(pd.Series(values, name="y")).task == task


def test_multiclass_and_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 3000)
    logits = rng.normal(0, 1, (3000, 4)) + 1.5 * np.eye(4)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    assert evaluation.task_metrics("multiclass", labels, probabilities) == pytest.approx({
        "accuracy": skm.accuracy_score(labels, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predicted),
        "macro_f1": skm.f1_score(labels, predicted, average="macro"),
        "log_loss": skm.log_loss(labels, probabilities),
    }, rel=1e-9)  # fmt: skip
    values = rng.normal(50, 10, 3000)
    guesses = values + rng.normal(0, 3, 3000)
    assert evaluation.task_metrics("regression", values, guesses) == pytest.approx({
        "rmse": skm.root_mean_squared_error(values, guesses),
        "mae": skm.mean_absolute_error(values, guesses),
        "r2": skm.r2_score(values, guesses),
    }, rel=1e-9)  # fmt: skip


def test_text_classes_are_coded_in_order_and_every_split_holds_every_class() -> None:
    frame = pd.DataFrame({"x": range(60), "tier": ["pro", "basic", "plus"] * 20})
    data = prepare(frame, "tier", "multiclass")
    assert data.classes == ("basic", "plus", "pro")
    assert data.labels[:3].tolist() == [2, 0, 1]
    split = stratified_split(strata(data.labels, data.task), 0.2, 0.2, seed=1)
    for part in (split.train, split.valid, split.holdout):
        assert set(data.labels[part]) == {0, 1, 2}
    values = prepare(pd.DataFrame({"x": range(100), "y": np.arange(100) * 1.5}), "y", "regression")
    split = stratified_split(strata(values.labels, values.task), 0.2, 0.2, seed=1)
    # Each decile of the target is in the holdout: its values span the range.
    assert values.labels[split.holdout].min() < 15 and values.labels[split.holdout].max() > 135


def _problems(frame: pd.DataFrame, tmp_path: Path, target: str, task: str) -> list[str]:
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    report = validate_dataset(read_dataset(path), target, None, task)  # type: ignore[arg-type]
    return [p.problem for p in report.problems if p.column == target]


def test_bad_targets_get_one_message_each_per_task(tmp_path: Path) -> None:
    rows = pd.DataFrame({"x": np.arange(200.0)})
    prices = rows.assign(price=[*np.arange(197.0), "tbd", "unknown", "tbd"])
    (text,) = _problems(prices, tmp_path, "price", "regression")
    assert "3 rows hold text" in text and "'tbd'" in text and "--task multiclass" in text

    tiers = rows.assign(tier=["basic"] * 120 + ["plus"] * 79 + ["platinum"])
    (rare,) = _problems(tiers, tmp_path, "tier", "multiclass")
    assert "'platinum' in 1 row" in rare and "at least 3 rows" in rare

    (three,) = _problems(tiers, tmp_path, "tier", "binary")
    assert "3 class(es); a binary model needs exactly 2" in three and "--task multiclass" in three
    two = rows.assign(tier=["basic", "plus"] * 100)
    (few,) = _problems(two, tmp_path, "tier", "multiclass")
    assert "a multiclass model needs 3" in few and "--task binary" in few
    assert _problems(two, tmp_path, "tier", "binary") == []


def test_a_dataset_of_its_own_is_named_after_its_file_and_a_clash_is_refused(
    tmp_path: Path,
) -> None:
    data = tmp_path / "House Prices 2024.csv"
    spec = choose_model("churn", data, None, "price")
    assert (spec.name, spec.target, spec.data_schema) == ("house-prices-2024", "price", None)
    assert choose_model("churn", data, None, None).name == "churn"  # the environment's model
    with pytest.raises(ModelyardMlError, match="model churn predicts 'churned', not 'price'"):
        choose_model("churn", data, "churn", "price")
    with pytest.raises(ModelyardMlError, match="already defines"):
        choose_model("churn", tmp_path / "segment.csv", None, "price")
    with pytest.raises(ModelyardMlError, match=r"no model named 'prices'.*--target"):
        choose_model("churn", data, "prices", None)
    segment = choose_model("churn", data, "segment", None)
    assert (segment.task, segment.target) == ("multiclass", "segment")
    frame = pd.DataFrame({"segment": ["a", "b", "c"]})
    with pytest.raises(ModelyardMlError, match="says task multiclass, not regression"):
        choose_task(segment, frame, "regression")
    assert (
        choose_task(spec, frame.rename(columns={"segment": "price"}), "binary").source == "option"
    )


def test_a_gate_per_task_is_checked_against_the_task_s_metrics(environments: Path) -> None:
    def refused(gate: object) -> str:
        edit_environment(environments, "local", {"training.gate": gate})
        result = run_cli("env", "validate", "local")
        assert result.returncode == 2, result.stdout
        return result.stderr

    message = refused({"binary": "roc_auc >= 0.8", "multiclass": "pr_auc >= 0.5"})
    assert "Pulumi.local.yaml" in message and "modelyard:training.gate" in message
    assert "multiclass models have no metric 'pr_auc'" in message and "macro_f1" in message
    assert "lower is better for rmse" in refused({"regression": "rmse >= 3.5"})


@pytest.mark.parametrize(
    ("kind", "body", "problem"),
    [
        (PredictionKind(), {"predictions": [0.3]}, None),
        (PredictionKind(), {"predictions": [1.3]}, "outside [0, 1]"),
        (PredictionKind("regression", (), (1.0, 2.0)), {"predictions": [-40.5]}, None),
        (PredictionKind("regression", (), (1.0,)), {"predictions": [None]}, "not a finite"),
        (PredictionKind("multiclass", ("a", "b"), ()),
         {"predictions": [[0.2, 0.8]], "classes": ["a", "b"]}, None),
        (PredictionKind("multiclass", ("a", "b"), ()),
         {"predictions": [[0.2, 0.7]], "classes": ["a", "b"]}, "do not sum to 1"),
        (PredictionKind("multiclass", ("a", "b", "c"), ()),
         {"predictions": [[0.2, 0.8]], "classes": ["a", "b"]}, "3 class probabilities"),
    ],
)  # fmt: skip
def test_the_smoke_test_judges_an_answer_as_its_task_has_it(
    kind: PredictionKind, body: dict[str, object], problem: str | None
) -> None:
    found = kind.answer_problem(body, 1)
    assert found is None if problem is None else problem in str(found)


def test_prediction_bins_and_samples_per_task() -> None:
    binary = PredictionKind()
    assert binary.bin_counts(np.array([0.05, 0.15, 0.99, 1.0])) == {"0.0": 1, "0.1": 1, "0.9": 2}
    demand = PredictionKind("regression", (), (10.0, 20.0))
    assert demand.bin_counts(np.array([3.0, 15.0, 25.0, 30.0])) == {"-inf": 1, "10": 1, "20": 2}
    tiers = PredictionKind("multiclass", ("basic", "pro"), ())
    assert tiers.bin_counts(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])) == {"basic": 1,
                                                                               "pro": 2}  # fmt: skip
    assert tiers.sample_value(np.array([0.2, 0.8])) == "pro"
    assert json.loads(b"{" + tiers.extra_answer(np.array([[0.9, 0.1]]))[1:] + b"}") == {
        "classes": ["basic", "pro"], "labels": ["basic"]}  # fmt: skip
    assert PredictionKind.from_metadata(tiers.to_metadata()) == tiers
    assert PredictionKind.of_booster_file(b"tree\nversion=v4\nobjective=regression\n", 1).task == (
        "regression"
    )
    assert PredictionKind.of_booster_file(b"objective=multiclass num_class:3\n", 3).classes == (
        "0", "1", "2")  # fmt: skip
