"""Where a served model comes from: a folder (baked into the image) or an MLflow model URI.

`models:/NAME@ALIAS` is resolved to a concrete version each time it is asked, so the server can
follow an environment's alias; every version is downloaded once into a local cache.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.serving.model import local_identity
from modelyard.ml.serving.routing import VersionRef

_ALIAS = re.compile(r"^models:/([^/@]+)@([^/]+)/?$")
_VERSION = re.compile(r"^models:/([^/@]+)/(\d+)/?$")


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
        elif uri.startswith("runs:/"):
            return VersionRef(
                name=uri.rstrip("/").rsplit("/", 1)[-1],
                version="",
                path="",
                run_id=uri.split("/")[1],
                uri=uri,
            )
        else:
            raise ModelSourceError(
                f"{uri}: not a model URI this server understands; use models:/NAME@ALIAS, "
                "models:/NAME/VERSION, runs:/RUN_ID/PATH or a local MLflow model folder"
            )
    except MlflowException as exc:
        raise ModelSourceError(f"{uri}: the model registry refused ({exc.message})") from None
    return VersionRef(
        name=mv.name,
        version=str(mv.version),
        path="",
        run_id=mv.run_id,
        uri=f"models:/{mv.name}/{mv.version}",
    )


def materialise(ref: VersionRef, cache: Path) -> VersionRef:
    """A copy of `ref` whose `path` is a local folder holding the model (downloaded once)."""
    if ref.path:
        return ref
    import mlflow

    target = cache / ref.name / (ref.version or ref.run_id or "run")
    done = target / ".complete"
    if not done.is_file():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(partial))
            )
        except Exception as exc:
            raise ModelSourceError(f"{ref.uri}: download failed ({exc})") from None
        shutil.rmtree(target, ignore_errors=True)
        if local.resolve() == partial.resolve():
            partial.rename(target)
        else:
            local.rename(target)
            shutil.rmtree(partial, ignore_errors=True)
        done.touch()
    return VersionRef(
        name=ref.name, version=ref.version, path=str(target), run_id=ref.run_id, uri=ref.uri
    )
