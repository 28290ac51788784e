"""The serving image, built from debian:bookworm-slim, run as deployed: non-root, read-only root
filesystem, predictions over HTTP through a published loopback port."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelyard.ml.serving.compiled import SWAPPED_IN
from modelyard.ml.serving.image import build_context
from modelyard.pipelines.local_mlflow import free_port

from tests.serving.conftest import Trained
from tests.serving.helpers import call, records, score

pytestmark = [pytest.mark.slow, pytest.mark.docker]
RUN = uuid.uuid4().hex[:8]


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def _logs(name: str) -> str:
    """What the container printed, stdout and stderr (the server logs to stderr)."""
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


@pytest.fixture(scope="session")
def serving_image(
    base_image: str, local_model_a: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Built once per run, with model A baked in (as the packaging step does)."""
    tag = f"modelyard-test/serving:{RUN}"
    context = build_context(tmp_path_factory.mktemp("serving-image") / "context", local_model_a,
                            {"name": "churn", "version": "7", "run_id": "run-of-v7"})  # fmt: skip
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True)
    yield tag
    docker("rmi", "-f", tag, check=False)


def _run(image: str, *env: str) -> tuple[str, str]:
    port = free_port()
    name = f"modelyard-serving-{RUN}-{port}"
    docker("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,size=64m",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "-p", f"127.0.0.1:{port}:8080", *[f"-e{e}" for e in env], image)  # fmt: skip
    return name, f"http://127.0.0.1:{port}"


def _wait(url: str, path: str, status: int, timeout: float = 120.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, _, body = call(url, "GET", path)
            if got == status:
                return body
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url}{path} never answered {status}")


def test_image_serves_its_baked_model_as_non_root_on_a_read_only_root(
    serving_image: str, model_a: Trained
) -> None:
    name, url = _run(serving_image)
    try:
        info = json.loads(_wait(url, "/version", 200))
        _wait(url, "/health", 200)
        info = json.loads(call(url, "GET", "/version")[2])
        assert (info["model_name"], info["model_version"], info["run_id"]) == (
            "churn",
            "7",
            "run-of-v7",
        )
        booster, features = model_a
        status, body, headers = score(url, {"dataframe_records": records(features.iloc[:20])})
        assert status == 200 and headers["x-model-version"] == "7"
        assert body["predictions"] == pytest.approx(
            list(booster.predict(features.iloc[:20])), rel=1e-9
        )
        assert docker("exec", name, "id", "-u") == "10001"
        assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", name) == "true"
        # The compiled model works in the image too (non-root, read-only root, /tmp for state).
        deadline = time.monotonic() + 90
        while SWAPPED_IN not in _logs(name):
            assert time.monotonic() < deadline, _logs(name)[-3000:]
            time.sleep(1)
        status, body, _ = score(url, {"dataframe_records": records(features.iloc[:20])})
        assert body["predictions"] == pytest.approx(
            list(booster.predict(features.iloc[:20])), rel=1e-9
        )
        deadline = time.monotonic() + 90
        while docker("inspect", "-f", "{{.State.Health.Status}}", name) != "healthy":
            assert time.monotonic() < deadline, "the HEALTHCHECK never reported healthy"
            time.sleep(2)
    finally:
        docker("rm", "-f", name, check=False)


def test_image_without_a_model_answers_not_ready_instead_of_crash_looping(
    serving_image: str,
) -> None:
    name, url = _run(serving_image, "MODELYARD_MODEL_URI=models:/churn@production",
                     "MLFLOW_TRACKING_URI=http://127.0.0.1:9", "MODELYARD_POLL_SECONDS=2")  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "not ready" not in (body := json.loads(_wait(url, "/health", 503)))["message"]:
            assert time.monotonic() < deadline, body
            time.sleep(1)
        assert body["ready"] is False and "models:/churn@production" in body["message"]
        time.sleep(3)
        assert docker("inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name) == "true 0"
    finally:
        docker("rm", "-f", name, check=False)
