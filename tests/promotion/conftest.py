"""Promotion fixtures: versions registered like the pipeline does, against a real mlflow server.

Each test gets its own model name (so aliases, leases and records never leak between tests)
and a private copy of environments/ whose files serve that model.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from modelyard.contracts import artifacts
from modelyard.pipelines.local_mlflow import MlflowServer
from promotion_helpers import Register


@pytest.fixture(scope="session")
def logged_model(mlflow_server: MlflowServer) -> str:
    """One tiny real LightGBM model, logged once (its id); every test version points at it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4},
        lgb.Dataset(x, y),
        num_boost_round=5,
    )
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("promotion-tests")
    with mlflow.start_run():
        info = mlflow.lightgbm.log_model(booster, name="model", input_example=x[:2])
    return str(info.model_id)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private .modelyard state folder (promotion locks, live samples)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def model(environments: Path, tracking: str, state: Path) -> str:
    """A fresh registered-model name, served by every environment file of this test."""
    name = f"churn-{uuid.uuid4().hex[:8]}"
    for path in environments.glob("Pulumi.*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("model: churn\n", f"model: {name}\n"), encoding="utf-8")
    # Staging's live traffic comes from local servers here (promotion_helpers.live_traffic); the
    # drift evidence read out of Kubernetes pods is the cluster tests' (tests/cluster).
    staging = environments / "Pulumi.staging.yaml"
    text = staging.read_text(encoding="utf-8")
    assert "    platform: kubernetes\n" in text
    staging.write_text(text.replace("    platform: kubernetes\n", "    platform: process\n"))
    MlflowClient(tracking).create_registered_model(name)
    return name


@pytest.fixture
def register(model: str, tracking: str, logged_model: str) -> Register:
    """Register a version of `model` the way training does: metrics on its run, lineage tags."""
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("promotion-tests")
    assert experiment is not None

    def make(
        roc_auc: float = 0.9,
        env: str = "staging",
        passed: bool = True,
        extra_metrics: dict[str, float] | None = None,
        profile: dict[str, object] | None = None,
        tags: dict[str, str] | None = None,
        name: str | None = None,
    ) -> int:
        """A version of `model` (or of registered model `name`)."""
        run = client.create_run(experiment.experiment_id)
        run_id = run.info.run_id
        metrics = {"roc_auc": roc_auc, "accuracy": 0.8, "pr_auc": 0.7, "log_loss": 0.4,
                   "f1": 0.6, "precision": 0.6, "recall": 0.6, **(extra_metrics or {})}  # fmt: skip
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        if profile is not None:
            client.log_text(run_id, json.dumps(profile), artifacts.PROFILE)
        client.set_terminated(run_id)
        lineage = {
            "modelyard.environment": env,
            "modelyard.gate.rule": "roc_auc >= 0.8",
            "modelyard.gate.value": f"{roc_auc:.4f}",
            "modelyard.gate.passed": "true" if passed else "false",
            "modelyard.dataset.digest": uuid.uuid4().hex * 2,
            "modelyard.git.commit": "0" * 40,
            "modelyard.pipeline.run_id": "test",
            **(tags or {}),
        }
        version = client.create_model_version(
            name or model, f"models:/{logged_model}", run_id=run_id, tags=lineage,
            model_id=logged_model,
        )  # fmt: skip
        return int(version.version)

    return make
