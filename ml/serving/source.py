"""Where a served model comes from: a folder (baked into the image) or an MLflow model URI.

Every form MLflow 3 resolves: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/MODEL_ID`
(the `models:/m-...` URI of a logged model), `runs:/RUN_ID/PATH`, a local folder or `file://`.
`models:/NAME@ALIAS` is resolved to a concrete version each time it is asked, so the server can
follow an environment's alias; every version is downloaded once into a local cache.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.serving.model import local_identity
from modelyard.ml.serving.routing import VersionRef

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_ALIAS = re.compile(r"^models:/([^/@]+)@([^/]+)/?$")
_VERSION = re.compile(r"^models:/([^/@]+)/(\d+)/?$")
# One segment, no version or alias: MLflow 3 reads it as a logged model's id, never as a name.
_LOGGED_MODEL = re.compile(r"^models:/([^/@]+)/?$")
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


class ModelSourceError(ModelyardMlError):
    """The model URI is wrong or the registry cannot be reached."""


class NoModelYet(ModelyardMlError):
    """The alias exists in no registered version yet: serve not-ready, don't crash."""


def resolve(uri: str) -> VersionRef:
    """The concrete version `uri` means right now (without downloading it)."""
    if not uri:
        raise ModelSourceError(
            "no model to serve: set MODELYARD_MODEL_URI (e.g. models:/churn@production) or bake "
            "a model into the image"
        )
    local = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if ("://" not in uri and ":/" not in uri) or uri.startswith("file://"):
        if not (local / "MLmodel").is_file():
            raise ModelSourceError(f"{local}: no MLflow model there (no MLmodel file)")
        identity = local_identity(local)
        return VersionRef(
            name=identity["name"],
            version=identity["version"],
            path=str(local.resolve()),
            run_id=identity["run_id"] or None,
            uri=uri,
        )
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if match := _ALIAS.match(uri):
            name, alias = match[1], match[2]
            try:
                mv = client.get_model_version_by_alias(name, alias)
            except MlflowException as exc:
                if exc.error_code in (
                    "RESOURCE_DOES_NOT_EXIST",
                    "INVALID_PARAMETER_VALUE",
                    "NOT_FOUND",
                ):
                    raise NoModelYet(
                        f"no version of model {name!r} has the alias {alias!r} yet: promote one "
                        f"(modelyard promote {name} --to {alias}); serving starts by itself then"
                    ) from None
                raise
        elif match := _VERSION.match(uri):
            mv = client.get_model_version(match[1], match[2])
        elif match := _LOGGED_MODEL.match(uri):
            return _logged_model(client, match[1], uri)
        elif uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
            if not run_id or not path:
                raise ModelSourceError(
                    f"{uri}: name the model's path in the run: runs:/RUN_ID/PATH "
                    "(e.g. runs:/RUN_ID/model)"
                )
            client.get_run(run_id)  # a missing run is named now, not as a failed download
            # The version is the model's own id, read once it is downloaded (materialise).
            return VersionRef(
                name=path.rsplit("/", 1)[-1], version="", path="", run_id=run_id, uri=uri
            )
        else:
            raise ModelSourceError(
                f"{uri}: not a model URI this server understands; use models:/NAME@ALIAS, "
                "models:/NAME/VERSION, models:/MODEL_ID (a logged model, models:/m-...), "
                "runs:/RUN_ID/PATH or a local MLflow model folder"
            )
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise ModelSourceError(
                f"{uri}: not found in MLflow at {_mlflow_uri()} ({exc.message})"
            ) from None
        raise ModelSourceError(f"{uri}: the model registry refused ({exc.message})") from None
    return VersionRef(
        name=mv.name,
        version=str(mv.version),
        path="",
        run_id=mv.run_id,
        uri=f"models:/{mv.name}/{mv.version}",
    )


def _logged_model(client: MlflowClient, model_id: str, uri: str) -> VersionRef:
    """MLflow 3's `models:/MODEL_ID`: the logged model itself, registered or not."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_logged_model(model_id)
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise
        raise ModelSourceError(
            f"{uri}: no logged model with the id {model_id!r} in MLflow at {_mlflow_uri()}; "
            f"a registered model is models:/{model_id}@ALIAS or models:/{model_id}/VERSION"
        ) from None
    if model.status == LoggedModelStatus.PENDING:
        raise NoModelYet(
            f"logged model {model_id} is still being logged (status PENDING); serving starts "
            "by itself once it is READY"
        )
    if model.status == LoggedModelStatus.FAILED:
        raise ModelSourceError(f"{uri}: logging this model failed (status FAILED): log it again")
    return VersionRef(
        name=model.name,
        version=model.model_id,
        path="",
        run_id=model.source_run_id or None,
        uri=model.model_uri,
    )


def _mlflow_uri() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())


def materialise(ref: VersionRef, cache: Path) -> VersionRef:
    """A copy of `ref` whose `path` is a local folder holding the model (downloaded once)."""
    if ref.path:
        return ref
    target = cache / ref.name / (ref.version or ref.run_id or "run")
    if not (target / COMPLETE).is_file():
        _download(ref, target)
    return VersionRef(
        name=ref.name,
        version=ref.version or _version_of(target),
        path=str(target),
        run_id=ref.run_id,
        uri=ref.uri,
    )


# Marks a cached folder as whole. It is written before the folder is published, so a folder at
# its cache path is always whole (a cache from an older kit may hold one without it).
COMPLETE = ".complete"


def _download(ref: VersionRef, target: Path) -> None:
    """Download into a folder of this process's own and publish it with one rename: servers that
    share a cache (several on one host) never see, or remove, each other's half-downloads."""
    import mlflow

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(partial))
            )
        except Exception as exc:
            raise ModelSourceError(f"{ref.uri}: download failed ({exc})") from None
        if not (local / "MLmodel").is_file():
            raise ModelSourceError(f"{ref.uri}: no MLflow model there (no MLmodel file)")
        (local / COMPLETE).touch()
        _set_aside_unfinished(target)
        try:
            local.rename(target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another server published this version first; its copy is the same model.
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _set_aside_unfinished(target: Path) -> None:
    """Remove a folder an older kit left at `target` without its mark (a download it never
    finished), moving it out of the way first so no other server is still reading it there."""
    if not target.exists() or (target / COMPLETE).is_file():
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.unfinished.", dir=target.parent))
    with contextlib.suppress(FileNotFoundError):
        target.rename(aside / target.name)
    shutil.rmtree(aside, ignore_errors=True)


def _version_of(folder: Path) -> str:
    """A downloaded `runs:/` model's version: its MLflow 3 logged-model id (as models:/m-...
    reports it), else what a local folder reports."""
    from mlflow.models import Model

    try:
        model_id = Model.load(str(folder)).model_id
    except Exception:  # an MLmodel MLflow cannot read: the worker names the problem
        model_id = None
    return str(model_id or local_identity(folder)["version"])
