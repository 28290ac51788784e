"""Drift past the threshold starts retraining: a Jenkins build where Jenkins exists
(JENKINS_URL, JENKINS_USER, JENKINS_API_TOKEN, optional JENKINS_JOB), else the local pipeline."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from modelyard.ml.errors import ModelyardMlError


class RetrainError(ModelyardMlError):
    """Retraining could not be started."""


def trigger_retraining(
    environment: str, reason: str, log_dir: Path, data: Path | None = None,
    model: str | None = None,
) -> str:  # fmt: skip
    """Start retraining `model` (None: training.model) for `environment`; returns where it runs
    (never any credential). The local pipeline needs the training data; a Jenkins build knows
    its own."""
    jenkins = os.environ.get("JENKINS_URL")
    if jenkins:
        return _jenkins_build(jenkins.rstrip("/"), environment, reason, model)
    if data is None:
        raise RetrainError(
            f"drift in {environment} calls for retraining (monitoring.onDrift: retrain) but the "
            "local pipeline needs its training data: pass --retrain-data PATH (or set JENKINS_URL)"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"retrain-{environment}{'-' + model if model else ''}.log"
    command = [str(Path(sys.executable).with_name("modelyard")), "pipeline", "run", environment,
               "--data", str(data.resolve()), "--reason", reason,
               *(["--model", model] if model else [])]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return f"local pipeline started: {' '.join(command[1:])} (pid {process.pid}, log {log_path})"


def _jenkins_build(base: str, environment: str, reason: str, model: str | None) -> str:
    job = os.environ.get("JENKINS_JOB", "modelyard")
    # The parameters pipelines/Jenkinsfile declares (a test holds the two together).
    parameters = {"ENV": environment, "REASON": reason, **({"MODEL": model} if model else {})}
    query = urllib.parse.urlencode(parameters)
    url = f"{base}/job/{urllib.parse.quote(job)}/buildWithParameters?{query}"
    request = urllib.request.Request(url, method="POST", data=b"")
    user, token = os.environ.get("JENKINS_USER"), os.environ.get("JENKINS_API_TOKEN")
    if not (user and token):
        raise RetrainError("JENKINS_URL is set but JENKINS_USER / JENKINS_API_TOKEN are not")
    credentials = base64.b64encode(f"{user}:{token}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            queued = response.headers.get("Location", "")
    except (urllib.error.URLError, OSError) as exc:
        raise RetrainError(f"Jenkins at {base} refused the build of job {job}: {exc}") from None
    return f"Jenkins build of job {job} queued {queued}".strip()
