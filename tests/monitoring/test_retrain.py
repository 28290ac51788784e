"""Drift triggers retraining: a Jenkins build over HTTP, or the local pipeline."""

from __future__ import annotations

import base64
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from modelyard.ml.monitoring.retrain import RetrainError, trigger_retraining

from tests.helpers import REPO
from tests.pipelines import jenkinsfile_model

# The build parameters Jenkins takes are those the Jenkinsfile declares.
JENKINSFILE = (REPO / "pipelines/Jenkinsfile").read_text()


@pytest.fixture
def jenkins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """A stand-in for Jenkins' buildWithParameters endpoint on loopback: records each call."""
    calls: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(201)
            self.send_header("Location", "http://jenkins/queue/item/42/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("JENKINS_URL", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("JENKINS_USER", "modelyard")
    monkeypatch.setenv("JENKINS_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("JENKINS_JOB", "churn-pipeline")
    yield calls
    server.shutdown()


def test_drift_queues_a_jenkins_build_without_showing_the_token(
    jenkins: list[tuple[str, str]], tmp_path: Path
) -> None:
    message = trigger_retraining("production", "drift in region", tmp_path)
    assert message == "Jenkins build of job churn-pipeline queued http://jenkins/queue/item/42/"
    path, auth = jenkins[0]
    assert path == "/job/churn-pipeline/buildWithParameters?ENV=production&REASON=drift+in+region"
    # Jenkins ignores a parameter its job does not declare: each one sent is declared.
    declared = jenkinsfile_model.declared_parameters(jenkinsfile_model.parse(JENKINSFILE))
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert set(sent) <= set(declared), (sorted(sent), declared)
    assert base64.b64decode(auth.removeprefix("Basic ")) == b"modelyard:s3cret-token"
    assert "s3cret" not in message


def test_drift_of_another_model_queues_a_build_of_that_model(
    jenkins: list[tuple[str, str]], tmp_path: Path
) -> None:
    trigger_retraining("production", "drift in plan", tmp_path, model="segment")
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(jenkins[0][0]).query)
    assert sent == {"ENV": ["production"], "REASON": ["drift in plan"], "MODEL": ["segment"]}
    declared = jenkinsfile_model.declared_parameters(jenkinsfile_model.parse(JENKINSFILE))
    assert "MODEL" in declared


def test_local_retraining_needs_the_training_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JENKINS_URL", raising=False)
    with pytest.raises(RetrainError, match="--retrain-data PATH"):
        trigger_retraining("local", "drift", tmp_path)
