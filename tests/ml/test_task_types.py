"""A multiclass and a regression model end to end, on datasets no model.yaml describes, with the
shipped `local` environment as it is: `modelyard train --target` infers the task, trains to the
environment's gate for that task, registers; the real server answers through MLflow's scoring
protocol with the booster's own predictions; its live samples feed a drift check."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.helpers import edit_environment, run_cli
from tests.serving.helpers import Server, score, start_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _grades(rows: int, seed: int) -> pd.DataFrame:
    """Three text classes ("low", "mid", "high") from four features and a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "acidity": rng.normal(0, 1, rows), "sugar": rng.normal(0, 1, rows),
        "alcohol": rng.normal(0, 1, rows), "noise": rng.normal(0, 1, rows),
        "colour": rng.choice(["red", "white", "rose"], rows),
    })  # fmt: skip
    quality = (1.5 * frame["alcohol"] - frame["acidity"] + 0.8 * (frame["colour"] == "red")
               + rng.normal(0, 0.4, rows))  # fmt: skip
    frame["grade"] = np.select([quality < -0.6, quality < 0.8], ["low", "mid"], "high")
    return frame


def _prices(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "area": rng.uniform(30, 200, rows), "rooms": rng.integers(1, 7, rows),
        "age": rng.uniform(0, 80, rows), "district": rng.choice(["centre", "east", "west"], rows),
    })  # fmt: skip
    frame["price"] = (2.5 * frame["area"] + 12 * frame["rooms"] - 0.8 * frame["age"]
                      + 60 * (frame["district"] == "centre") + rng.normal(0, 15, rows)).round(1)  # fmt: skip
    return frame


CASES = {
    # file stem -> (data, target, task, the gate local states for the task)
    "wine-grades": (_grades, "grade", "multiclass", "macro_f1 >= 0.7"),
    "house-prices": (_prices, "price", "regression", "r2 >= 0.8"),
}


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(folder))
    return folder


@pytest.mark.parametrize("stem", CASES)
def test_a_dataset_of_its_own_trains_registers_serves_and_is_checked_for_drift(
    stem: str, tracking: str, environments: Path, state: Path, tmp_path: Path
) -> None:
    make, target, task, gate = CASES[stem]
    data = tmp_path / f"{stem}.csv"
    make(3000, seed=1).to_csv(data, index=False)
    edit_environment(environments, "local", {"mlflow.experiment": f"tasks-{stem}"})

    trained = run_cli("train", "local", "--data", str(data), "--target", target, "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = json.loads(trained.stdout)
    assert (out["task"], out["task_source"]) == (task, "inferred")
    assert f"task: {task} (inferred" in trained.stderr
    assert out["model_name"] == stem and out["model_version"] >= 1
    assert out["gate"]["rule"] == gate and out["gate"]["passed"]
    assert out["classes"] == (["high", "low", "mid"] if task == "multiclass" else [])
    version = MlflowClient().get_model_version(stem, str(out["model_version"]))
    assert version.tags["modelyard.task"] == task

    uri = f"models:/{stem}/{out['model_version']}"
    server = start_server(uri, tmp_path / "server", sample_rate=1.0)
    try:
        _served_as_the_booster_predicts(server, uri, make(40, seed=2).drop(columns=[target]), task)
        _drift_checked(server, out["run_id"], make(300, seed=3).drop(columns=[target]), state)
    finally:
        server.stop()


def _served_as_the_booster_predicts(
    server: Server, uri: str, rows: pd.DataFrame, task: str
) -> None:
    status = server.wait_ready()
    assert status["ready"], server.log()
    code, body, _ = score(server.url, {"dataframe_split": json.loads(rows.to_json(orient="split"))})
    assert code == 200, body
    booster = mlflow.lightgbm.load_model(uri)
    as_trained = rows.copy()
    text = [c for c in rows.columns if not pd.api.types.is_numeric_dtype(rows[c])]
    for column, categories in zip(text, booster.pandas_categorical, strict=True):
        as_trained[column] = pd.Categorical(rows[column], categories=categories)
    expected = np.asarray(booster.predict(as_trained))
    np.testing.assert_allclose(np.asarray(body["predictions"]), expected, rtol=1e-9)
    if task == "multiclass":
        assert expected.shape == (len(rows), 3)
        assert body["classes"] == ["high", "low", "mid"]
        assert body["labels"] == [body["classes"][i] for i in expected.argmax(axis=1)]
    else:
        assert expected.shape == (len(rows),) and "classes" not in body


def _drift_checked(server: Server, run_id: str, rows: pd.DataFrame, state: Path) -> None:
    """The training population again: the check reads the live samples (inputs and the
    predictions as the task has them) against the training profile and finds no drift."""
    for start in range(0, len(rows), 50):
        chunk = rows.iloc[start : start + 50]
        code, body, _ = score(server.url, {"dataframe_records": json.loads(
            chunk.to_json(orient="records"))})  # fmt: skip
        assert code == 200, body
    samples = server.options.state_dir / "samples"

    def sampled() -> int:
        return sum(len(p.read_text().splitlines()) for p in samples.glob("*.jsonl"))

    server.wait(lambda _: sampled() >= len(rows), 30, "the samples flushed")
    checked = run_cli("monitor", "drift", "local", "--samples", str(samples),
                      "--profile", f"runs:/{run_id}", "--report", str(state / "drift.html"))  # fmt: skip
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "prediction" in checked.stdout + checked.stderr


def test_training_a_task_the_single_gate_cannot_judge_names_the_file_and_the_fix(
    tracking: str, environments: Path, state: Path, tmp_path: Path
) -> None:
    edit_environment(environments, "local", {"training.gate": "roc_auc >= 0.6"})
    data = tmp_path / "prices.csv"
    pd.DataFrame({"x": np.arange(300.0), "price": np.arange(300.0) * 2}).to_csv(data, index=False)
    result = run_cli("train", "local", "--data", str(data), "--target", "price")
    assert result.returncode == 2, result.stderr
    said = result.stderr
    assert "Pulumi.local.yaml" in said and "modelyard:training.gate" in said
    assert "cannot judge a regression model" in said and "regression: r2 >= 0.5" in said


def test_a_text_target_trained_as_regression_is_refused_before_training(
    tracking: str, environments: Path, state: Path, tmp_path: Path
) -> None:
    data = tmp_path / "prices.csv"
    prices = [*np.arange(297.0), "tbd", "tbd", "call us"]
    pd.DataFrame({"x": np.arange(300.0), "price": prices}).to_csv(data, index=False)
    result = run_cli("train", "local", "--data", str(data), "--target", "price", "--task",
                     "regression")  # fmt: skip
    assert result.returncode != 0
    assert "3 rows hold text" in result.stderr and "nothing was trained" in result.stderr


@pytest.mark.parametrize(("model", "task", "metric", "own"), [
    ("segment", "multiclass", "macro_f1", ("max_depth", "12")),
    ("demand", "regression", "r2", ("max_bin", "127")),
])  # fmt: skip
def test_each_sample_model_validates_and_trains_to_local_s_gate_with_its_own_params(
    model: str, task: str, metric: str, own: tuple[str, str], tracking: str, environments: Path,
    state: Path, tmp_path: Path,
) -> None:  # fmt: skip
    data = tmp_path / f"{model}.csv"
    written = run_cli("data", "sample", "--model", model, "--rows", "8000", "--out", str(data))
    assert written.returncode == 0, written.stderr
    valid = run_cli("data", "validate", "local", "--model", model, "--data", str(data))
    assert valid.returncode == 0, valid.stderr
    assert "schema and generic checks" in valid.stderr
    edit_environment(environments, "local", {"mlflow.experiment": f"sample-{model}"})
    trained = run_cli("train", "local", "--model", model, "--data", str(data), "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = json.loads(trained.stdout)
    assert (out["model_name"], out["task"], out["task_source"]) == (model, task, "model")
    assert out["gate"]["metric"] == metric and out["gate"]["passed"]
    # ml/models/MODEL/model.yaml's params reached LightGBM beside the environment's.
    logged = MlflowClient(tracking).get_run(out["run_id"]).data.params
    assert logged[own[0]] == own[1]
