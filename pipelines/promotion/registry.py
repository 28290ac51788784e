"""The MLflow model registry as promotion sees it: versions, aliases, metrics, artifacts.

Every MLflow failure becomes a PipelineError naming the server and the operation, so the CLI
prints one line instead of a traceback and the caller can stop before changing anything.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from modelyard.contracts import tags
from modelyard.contracts.environment import Environment
from modelyard.contracts.tags import Gate, Lineage, ServingImage
from modelyard.contracts.tasks import TASKS, Task
from modelyard.pipelines.errors import PipelineError

T = TypeVar("T")


def redact_uri(uri: str) -> str:
    """The tracking URI without any user:password part, safe to print and to record."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def tracking_uri_for(environment: Environment) -> str:
    # MLFLOW_TRACKING_URI wins over the file, the MLflow way (see contracts/environment/mlflow.py).
    return os.environ.get("MLFLOW_TRACKING_URI") or environment.mlflow.tracking_uri


@dataclass(frozen=True)
class Version:
    """One registered model version with what promotion needs to judge it."""

    model: str
    number: int
    run_id: str
    created_ms: int
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def lineage(self) -> Lineage:
        return Lineage.from_tags(self.tags)

    @property
    def gate(self) -> Gate:
        return Gate.from_tags(self.tags)

    @property
    def task(self) -> Task:
        """What kind of model it is (a version trained before tasks were recorded: binary)."""
        found = self.tags.get(tags.TASK, "binary")
        return cast(Task, found) if found in TASKS else "binary"

    @property
    def serving_image(self) -> ServingImage | None:
        """The image the package stage pushed for this version, if it did."""
        return ServingImage.from_tags(self.tags)


class Registry:
    """A thin, error-translating wrapper over MlflowClient for one tracking server."""

    def __init__(self, uri: str) -> None:
        # MLflow retries a dead server for minutes by default; a person is waiting here.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        # stdout carries the `--json` answer: no run links, no progress bars.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.uri = uri
        self.shown_uri = redact_uri(uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def check_reachable(self) -> None:
        """Fail fast, before anything is read or changed, when the server does not answer."""
        if not self.uri.startswith(("http://", "https://")):
            return
        # /health needs no credentials; any answer short of a server error means it is up.
        health = f"{self.shown_uri.rstrip('/')}/health"
        try:
            with urllib.request.urlopen(health, timeout=5):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            problem = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        raise PipelineError(
            f"MLflow at {self.shown_uri} is unreachable or failing ({problem}); nothing was "
            "changed. Check MLFLOW_TRACKING_URI / modelyard:mlflow.trackingUri and the server."
        )

    def call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except MlflowException as exc:
            raise PipelineError(
                f"MLflow at {self.shown_uri} failed to {what}: {_first_line(exc.message)}"
            ) from None
        except (OSError, ConnectionError) as exc:
            raise PipelineError(f"MLflow at {self.shown_uri} failed to {what}: {exc}") from None

    # -- models and versions -------------------------------------------------------------

    def require_model(self, model: str) -> dict[str, str]:
        """The registered model's tags; a clear refusal when it does not exist."""
        try:
            registered = self.client.get_registered_model(model)
        except MlflowException as exc:
            if _missing(exc):
                raise PipelineError(
                    f"model {model!r} is not registered in MLflow at {self.shown_uri}: train and "
                    "register it first (`modelyard pipeline run ENV`) or check the name."
                ) from None
            raise PipelineError(
                f"MLflow at {self.shown_uri} failed to read model {model!r}: "
                f"{_first_line(exc.message)}"
            ) from None
        return dict(registered.tags)

    def version(self, model: str, number: int) -> Version:
        try:
            found = self.client.get_model_version(model, str(number))
        except MlflowException as exc:
            if _missing(exc):
                raise PipelineError(
                    f"model {model!r} has no version {number} in MLflow at {self.shown_uri}."
                ) from None
            raise PipelineError(
                f"MLflow at {self.shown_uri} failed to read {model} v{number}: "
                f"{_first_line(exc.message)}"
            ) from None
        run_id = found.run_id or ""
        run_metrics: dict[str, float] = {}
        if run_id:
            run = self.call(f"read run {run_id}", lambda: self.client.get_run(run_id))
            run_metrics = dict(run.data.metrics)
        return Version(
            model=model,
            number=int(found.version),
            run_id=run_id,
            created_ms=int(found.creation_timestamp or 0),
            tags=dict(found.tags),
            metrics=run_metrics,
        )

    def versions(self, model: str) -> list[int]:
        found = self.call(
            f"list versions of {model}",
            lambda: self.client.search_model_versions(f"name = '{_quote(model)}'"),
        )
        return sorted(int(v.version) for v in found)

    def alias(self, model: str, env: str) -> int | None:
        """The version the alias named after `env` points to, or None when it is not set."""
        try:
            return int(self.client.get_model_version_by_alias(model, env).version)
        except MlflowException as exc:
            if _missing(exc) or "not found" in exc.message.lower():
                return None
            raise PipelineError(
                f"MLflow at {self.shown_uri} failed to read alias {model}@{env}: "
                f"{_first_line(exc.message)}"
            ) from None

    def set_alias(self, model: str, env: str, version: int | None) -> None:
        if version is None:
            self.call(
                f"remove alias {model}@{env}",
                lambda: self.client.delete_registered_model_alias(model, env),
            )
        else:
            self.call(
                f"move alias {model}@{env} to v{version}",
                lambda: self.client.set_registered_model_alias(model, env, str(version)),
            )

    def json_artifact(self, run_id: str, path: str) -> Any | None:
        """A JSON artifact of a run, or None when the run has no such file."""
        with tempfile.TemporaryDirectory() as folder:
            try:
                local = self.client.download_artifacts(run_id, path, folder)
            except MlflowException as exc:
                if _missing(exc) or "not found" in exc.message.lower():
                    return None
                raise PipelineError(
                    f"MLflow at {self.shown_uri} failed to read {path} of run {run_id}: "
                    f"{_first_line(exc.message)}"
                ) from None
            except OSError:
                return None
            try:
                return json.loads(Path(local).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None


def _missing(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _first_line(message: str) -> str:
    return (message or "").strip().splitlines()[0][:300] if message else "unknown error"
