"""Where training data lives: a file on this machine, or a URI that MLflow's artifact stores read
(`runs:/RUN_ID/PATH` and `mlflow-artifacts:/...` on the environment's MLflow, `s3://`, `gs://`,
`file://`...). A training Job reads a URI where it runs, so the data never has to pass through the
machine that runs the pipeline (`modelyard data push` puts a file there).

A URI's content is copied once per pipeline run into the state folder, so every stage and every
pod of one run trains on the same bytes, even if the object behind the URI changes meanwhile."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from modelyard.contracts import training_job, variables
from modelyard.contracts.environment.mlflow import MlflowSettings
from modelyard.ml.errors import DataValidationError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def is_uri(location: str) -> bool:
    return bool(_URI.match(location))


def located(text: str) -> str:
    """What a command's --data names, as the pipeline keeps it: a URI as given, a path absolute."""
    return text if is_uri(text) else str(Path(text).resolve())


def file_name(location: str) -> str:
    """The data file's name (its suffix says CSV or Parquet), from a path or a URI."""
    return PurePosixPath(location.split("?", 1)[0].rstrip("/")).name


def check_readable(location: str, mlflow: MlflowSettings) -> int:
    """The size in bytes of the file a URI names, asked of its store without reading it; one
    DataValidationError naming the URI when it is not there or cannot be read from here."""
    _connect(mlflow)
    import mlflow as client
    from mlflow.exceptions import MlflowException

    parent, name = location.rstrip("/").rsplit("/", 1)
    try:
        listed = client.artifacts.list_artifacts(artifact_uri=parent)
    except (MlflowException, OSError, ValueError) as exc:
        raise DataValidationError(_unreadable(location, _first_line(exc))) from None
    for entry in listed:
        if PurePosixPath(entry.path).name == name and not entry.is_dir:
            return int(entry.file_size or 0)
    raise DataValidationError(_unreadable(location, f"no file {name} in {parent}"))


def local_file(location: str, state: Path, mlflow: MlflowSettings) -> Path:
    """The file to read: a path as it is; a URI's content copied under `state` (once per pipeline
    run, see the module's note; MLflow is imported only to fetch it), downloaded beside its place
    and moved there whole, so that a process killed mid-download, or several pods fetching at
    once, never leave half a file to read."""
    if not is_uri(location):
        return Path(location)
    target = state / training_job.DATASETS / _folder(location) / file_name(location)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _connect(mlflow)
    import mlflow as client
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix=".fetching-", dir=target.parent) as folder:
        try:
            fetched = Path(client.artifacts.download_artifacts(artifact_uri=location,
                                                               dst_path=folder))  # fmt: skip
        except (MlflowException, OSError, ValueError) as exc:
            raise DataValidationError(_unreadable(location, _first_line(exc))) from None
        if not fetched.is_file():
            raise DataValidationError(_unreadable(location, "it names a folder, not a file"))
        os.replace(fetched, target)
    return target


def _connect(mlflow: MlflowSettings) -> None:
    """runs:/ and mlflow-artifacts:/ URIs are the environment's MLflow's."""
    from modelyard.ml.tracking import connect

    connect(mlflow)


def _folder(location: str) -> str:
    """The pipeline run's folder; outside a pipeline, one per URI."""
    run = os.environ.get(variables.PIPELINE_RUN_ID)
    return _safe(run) if run else "uri-" + hashlib.sha256(location.encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _unreadable(location: str, why: str) -> str:
    return (
        f"--data {location}: cannot be read ({why}). Give a file on this machine, or a URI of "
        "one in a store the trainer reaches (`modelyard data push ENV --data FILE` puts a file "
        "in the environment's MLflow and prints its runs:/ URI)."
    )
