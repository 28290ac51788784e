"""Every model URI MLflow 3 resolves is served, with the model's own predictions and identity."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from modelyard.ml.serving.source import ModelSourceError, resolve
from modelyard.pipelines.local_mlflow import free_port

from tests.serving.conftest import Trained
from tests.serving.helpers import Server, call, records, score

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@dataclass(frozen=True)
class Logged:
    """A model logged the MLflow 3 way: a logged model (models:/m-...) in a run, registered."""

    model_uri: str
    model_id: str
    run_id: str
    name: str
    version: str


def log_model(booster: lgb.Booster, features: pd.DataFrame, name: str) -> Logged:
    with mlflow.start_run() as run:
        info = mlflow.lightgbm.log_model(
            booster, name="model", signature=infer_signature(features, booster.predict(features)),
            input_example=features.head(3), registered_model_name=name,
        )  # fmt: skip
    return Logged(info.model_uri, info.model_id, run.info.run_id, name,
                  str(info.registered_model_version))  # fmt: skip


@pytest.fixture
def logged(tracking: str, model_a: Trained, model_name: str) -> Logged:
    logged = log_model(*model_a, model_name)
    mlflow.MlflowClient().set_registered_model_alias(model_name, "staging", logged.version)
    return logged


def test_every_uri_form_serves_the_boosters_predictions(
    logged: Logged, model_a: Trained, local_model_a: Path, server: Callable[..., Server]
) -> None:
    booster, features = model_a
    sample = features.iloc[:25]
    expected = booster.predict(sample)
    assert logged.model_uri == f"models:/{logged.model_id}" and logged.model_id.startswith("m-")
    registered = (logged.name, logged.version, logged.run_id)
    # URI -> the identity /version reports: name, version, run
    forms = {
        logged.model_uri: ("model", logged.model_id, logged.run_id),
        f"models:/{logged.name}/{logged.version}": registered,
        f"models:/{logged.name}@staging": registered,
        f"runs:/{logged.run_id}/model": ("model", logged.model_id, logged.run_id),
        str(local_model_a): ("churn-a", None, None),
        local_model_a.as_uri(): ("churn-a", None, None),
    }
    servers = {uri: server(uri, workers=1) for uri in forms}
    for uri, handle in servers.items():
        handle.wait_ready(timeout=180)
        status, body, headers = score(handle.url, {"dataframe_records": records(sample)})
        assert status == 200, (uri, body)
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-9, err_msg=uri)
        info = json.loads(call(handle.url, "GET", "/version")[2])
        name, version, run_id = forms[uri]
        got = (info["model_name"], info["model_version"], info["run_id"])
        assert got == (name, version or got[1], run_id), uri
        assert info["model_version"] == headers["x-model-version"] != ""


def test_a_registered_name_like_a_logged_model_id_is_still_a_name(
    tracking: str, model_a: Trained
) -> None:
    # `models:/m-...` with a version or an alias is a registered model; alone, a logged model.
    name = f"m-{uuid.uuid4().hex}"
    logged = log_model(*model_a, name)
    mlflow.MlflowClient().set_registered_model_alias(name, "production", logged.version)
    for uri in (f"models:/{name}/{logged.version}", f"models:/{name}@production"):
        ref = resolve(uri)
        assert (ref.name, ref.version, ref.run_id) == (name, logged.version, logged.run_id)
    with pytest.raises(ModelSourceError, match=f"no logged model with the id '{name}'"):
        resolve(f"models:/{name}")


def test_a_uri_that_does_not_exist_gets_a_clear_message(tracking: str) -> None:
    missing = uuid.uuid4().hex
    cases = {
        f"models:/m-{missing}": f"no logged model with the id 'm-{missing}' in MLflow at {tracking}",
        f"models:/serving-test-{missing}/1": "not found in MLflow at",
        f"runs:/{missing}/model": f"Run with id={missing} not found",
        f"runs:/{missing}": "name the model's path in the run",
        "models:/churn/Production": "not a model URI this server understands",
    }
    for uri, message in cases.items():
        with pytest.raises(ModelSourceError, match="^" + re.escape(uri)) as raised:
            resolve(uri)
        assert message in str(raised.value), uri


def test_a_missing_logged_model_leaves_the_server_up_and_not_ready(
    tracking: str, server: Callable[..., Server]
) -> None:
    uri = f"models:/m-{uuid.uuid4().hex}"
    handle = server(uri, workers=1)
    status = handle.wait(
        lambda s: "no logged model" in s.get("message", ""), 120, "the not-ready message"
    )
    assert status["ready"] is False
    time.sleep(2.5)  # a few polls later it is still up, still saying why
    assert handle.process.poll() is None
    code, _, body = call(handle.url, "GET", "/ping")
    assert code == 503 and f"{uri}: no logged model with the id" in json.loads(body)["message"]


# -- against `mlflow models serve` ----------------------------------------------------------------


def numeric_model() -> tuple[lgb.Booster, pd.DataFrame]:
    """All-numeric (MLflow's own server cannot score LightGBM category columns from JSON)."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(2000, 6)), columns=[f"f{i}" for i in range(6)])
    frame.iloc[::11, 2] = np.nan
    target = ((frame["f0"] + frame["f1"] * frame["f3"]) > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 3}
    return lgb.train(params, lgb.Dataset(frame, target), 20), frame


def mlflow_models_serve(model_uri: str, log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", model_uri,
               "--env-manager", "local", "-w", "1", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    # MLflow execs `uvicorn` by name: the venv's bin must be on PATH even when not activated.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(command, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return url, process
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"mlflow models serve did not start: {log_path.read_text()[-3000:]}")


def test_same_predictions_as_mlflow_models_serve(
    tracking: str, model_name: str, server: Callable[..., Server], tmp_path: Path
) -> None:
    booster, features = numeric_model()
    logged = log_model(booster, features, model_name)
    ours = server(logged.model_uri, workers=1)
    theirs, process = mlflow_models_serve(logged.model_uri, tmp_path / "mlflow-serve.log")
    try:
        ours.wait_ready(timeout=180)
        sample = features.iloc[:40]
        payload = {
            "dataframe_split": {
                "columns": list(sample.columns),
                "data": [[None if np.isnan(v) else float(v) for v in row] for row in sample.values],
            }
        }
        expected = score(theirs, payload)[1]["predictions"]
        status, body, _ = score(ours.url, payload)
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-9)
        np.testing.assert_allclose(expected, booster.predict(sample), rtol=1e-9)
        pyfunc = mlflow.pyfunc.load_model(logged.model_uri)
        np.testing.assert_allclose(pyfunc.predict(sample), expected, rtol=1e-9)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
