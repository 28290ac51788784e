"""Connecting to the MLflow tracking server the MLflow way, with one clear error when it is down."""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any

import requests
from modelyard.contracts.environment.mlflow import MlflowSettings
from modelyard.ml.errors import ModelyardMlError

# MLflow retries unreachable servers for minutes by default; a pipeline should fail fast.
# MLflow's "View run at" lines go to stdout, where --json output must stay clean.
# MLflow's usage telemetry phones a third party from every job and holds each process up to a
# second at exit: off unless the team turns it on (MLFLOW_DISABLE_TELEMETRY=false).
_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class TrackingUnavailable(ModelyardMlError):
    """The tracking server cannot be reached or refuses the credentials."""


def tracking_uri(settings: MlflowSettings) -> str:
    """MLFLOW_TRACKING_URI wins over the environment file, as everywhere in MLflow."""
    return os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking_uri


def connect(settings: MlflowSettings) -> str:
    """Point MLflow at the environment's server and check it answers. Returns the URI."""
    uri = reachable_uri(settings)
    configure(uri)
    return uri


def reachable_uri(settings: MlflowSettings) -> str:
    """The tracking URI, checked to answer, without importing MLflow (a training process leaves
    MLflow to its sidecar)."""
    uri = tracking_uri(settings)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    return uri


def configure(uri: str) -> None:
    """Point this process's MLflow at `uri` (also done in a training job's sidecar process)."""
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)


def _credentials() -> tuple[str, str] | None:
    """Where MLflow's client finds them: MLFLOW_TRACKING_USERNAME/PASSWORD, else the [mlflow]
    section of ~/.mlflow/credentials (how the pods get theirs, from a mounted Secret)."""
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get(
            "MLFLOW_TRACKING_PASSWORD", ""
        )
    parser = configparser.ConfigParser()
    parser.read(Path.home() / ".mlflow" / "credentials")
    username = parser.get("mlflow", "mlflow_tracking_username", fallback="")
    if not username:
        return None
    return username, parser.get("mlflow", "mlflow_tracking_password", fallback="")


def check_server(uri: str) -> None:
    auth = _credentials()
    try:
        response = requests.get(
            f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=auth,
            timeout=10,
        )
    except requests.RequestException as exc:
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} cannot be reached ({type(exc).__name__}). "
            "Start it, or point MLFLOW_TRACKING_URI (or modelyard:mlflow.trackingUri) at one that runs."
        ) from None
    if response.status_code in (401, 403):
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} refused the credentials (HTTP {response.status_code}). "
            "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials)."
        )
    if response.status_code >= 400:
        raise TrackingUnavailable(
            f"the MLflow tracking server at {uri} answered HTTP {response.status_code}; "
            "check its log and that the URI points at an MLflow server."
        )


def experiment_id_of(client: Any, name: str) -> str:
    """The experiment named `name` (MlflowClient `client`): made, or restored if deleted."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name))
