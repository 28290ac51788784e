"""What a training job writes to a real `mlflow server` when it is picked up again after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from modelyard.ml.prediction_kind import PredictionKind
from modelyard.ml.training import mlflow_job

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_sidecar_state() -> Iterator[None]:
    """These tests call the sidecar's functions in this process, as its one job."""
    yield
    mlflow_job._job = None


def _attempt(workdir: Path, frame: pd.DataFrame) -> None:
    """What the sidecar of one attempt is asked before its run is finished."""
    sample = frame.drop(columns="label").head(50)
    record = mlflow_job.DatasetRecord(
        path=str(workdir / "data.csv"), name="data.csv", digest="d" * 64, target="label",
        rows=len(frame), elements=int(frame.size), sample=frame.head(20), nullable=(),
    )  # fmt: skip
    mlflow_job._job = None  # a new sidecar process knows nothing of the last one
    mlflow_job.open_job(str(workdir), "job-after-complete", "job-resume", "train-churn",
                        {"modelyard.environment": "test"}, record, {"passed": True}, 0,
                        PredictionKind().to_metadata())  # fmt: skip
    scores = np.full(len(sample), 0.5)
    mlflow_job.choose_model(0, str(workdir / "model.txt"), sample, scores)
    mlflow_job.mark_complete({"modelyard.gate.passed": "true", "modelyard.target": "label"})


def test_a_job_resumed_after_its_run_was_complete_keeps_its_one_model(
    tracking: str, tmp_path: Path, fresh_sidecar_state: None
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    frame["label"] = (frame["x"] + rng.normal(0, 0.5, 400) > 0).astype(int)
    train_set = lgb.Dataset(frame[["x", "y"]], frame["label"])
    lgb.train({"objective": "binary", "verbose": -1}, train_set, 5).save_model(
        tmp_path / "model.txt"
    )

    _attempt(tmp_path, frame)  # crashes after completing the run, before ending it
    first = mlflow_job._current()
    _attempt(tmp_path, frame)  # the same command, run again
    again = mlflow_job._current()
    run_id, version = mlflow_job.finish(True, "job-resume-model")

    assert again.run_id == first.run_id == run_id
    assert again.identity == first.identity
    client = MlflowClient()
    experiment = client.get_experiment_by_name("job-resume")
    assert experiment is not None
    logged = client.search_logged_models([experiment.experiment_id])
    assert [m.model_id for m in logged] == [first.identity["modelyard.model_id"]]
    registered = client.get_model_version("job-resume-model", str(version))
    assert registered.source == first.identity["modelyard.model_uri"]
    assert client.get_run(run_id).info.status == "FINISHED"
