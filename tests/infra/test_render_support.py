"""Helpers the serving-infrastructure tests share (no tests here)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from modelyard.infra.render import RenderedResource, RenderedState

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def pinned(environment: str, tag: str) -> str:
    """A pinned image reference from the environment's repository, as promotion writes it."""
    repos = {
        "staging": "registry.staging.example.internal/modelyard-serving",
        "production": "registry.example.internal/modelyard-serving",
    }
    digest = hashlib.sha256(f"{environment}:{tag}".encode()).hexdigest()
    return f"{repos[environment]}:{tag}@sha256:{digest}"


def edit_environment(folder: Path, name: str, **sections: dict[str, Any]) -> None:
    """Merge `{key: value}` into `modelyard:<section>` of a private copy's environment file;
    a value of None removes the key."""
    path = folder / f"Pulumi.{name}.yaml"
    document = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        block = document["config"].setdefault(f"modelyard:{section}", {})
        for key, value in values.items():
            if value is None:
                block.pop(key, None)
            elif isinstance(value, dict) and isinstance(block.get(key), dict):
                block[key].update(value)
            else:
                block[key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def deployments(state: RenderedState) -> dict[str, dict[str, Any]]:
    """Deployment manifests by their Kubernetes name."""
    return {r.inputs["metadata"]["name"]: r.inputs for r in state.of_type(DEPLOYMENT)}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_vars(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"]}


def one(state: RenderedState, type_suffix: str) -> RenderedResource:
    (found,) = [r for r in state.resources if r.type.endswith(type_suffix)]
    return found


REPO = Path(__file__).resolve().parents[2]


def make_repo(folder: Path) -> Path:
    """A git repository holding this work tree's program and environment files, committed."""
    for part in ("contracts", "infra", "ml"):  # what the program imports
        shutil.copytree(REPO / part, folder / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(REPO / "environments", folder / "environments")
    shutil.copy(REPO / "Pulumi.yaml", folder / "Pulumi.yaml")
    git(folder, "init", "-q", "-b", "main")
    commit_all(folder, "base")
    return folder


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "git",
            "-C",
            str(folder),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit_all(folder: Path, message: str) -> str:
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD")


PASSWORD = "mlflow-pass-0b5e-never-print-me"


def render_with_mlflow_credentials() -> RenderedState:
    """ModelServing (rolling, v3) and LocalModelServing given an authenticated MLflow server."""
    import pulumi
    from modelyard.infra.components.local_serving import LocalModelServing, LocalModelServingArgs
    from modelyard.infra.components.model_serving import ModelServing, ModelServingArgs, Release
    from modelyard.infra.render import render_program

    def program() -> None:
        credentials = ("modelyard", pulumi.Output.secret(PASSWORD))
        release = Release(3, pinned("staging", "v3"))
        ModelServing(
            "auth",
            ModelServingArgs(
                namespace="modelyard-staging",
                service_account="modelyard-serving",
                strategy="rolling",
                model_name="churn",
                desired=release,
                tracking_uri="https://mlflow.staging.example.internal",
                requests={"cpu": "100m", "memory": "256Mi"},
                limits={"cpu": "1", "memory": "1Gi"},
                mlflow_credentials=credentials,
            ),
        )
        LocalModelServing(
            "local-auth",
            LocalModelServingArgs(
                environment="local",
                model_name="churn",
                container="modelyard-local-serving",
                desired=release,
                tracking_uri="http://mlflow:5000",
                host_port=8180,
                memory_mb=512,
                cpus="1",
                mlflow_credentials=credentials,
            ),
        )

    return render_program("staging", program)


def training_job_manifest(workers: int = 1, uri: str | None = None) -> dict[str, Any]:
    """The Job the train stage would create for staging set to train on Kubernetes, with MLflow
    and registry credentials (their Secrets referenced by name), with `workers` workers, on a
    file streamed from the agent or on `uri`."""
    import tempfile

    import pytest
    from modelyard.contracts.environment import load_environment
    from modelyard.pipelines.pipeline.context import PipelineContext
    from modelyard.pipelines.pipeline.training_job import job_manifest, job_name

    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(REPO / "environments", folder, dirs_exist_ok=True)
        login = {"username": "modelyard", "password": {"secure": "v1:not-read-here"}}
        edit_environment(
            Path(folder),
            "staging",
            pipeline={"trainIn": "kubernetes"},
            serving={"mlflowCredentials": login, "pullCredentials": login},
            training={"kubernetes": {"workers": workers}},
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MODELYARD_ENVIRONMENTS_DIR", folder)
            environment = load_environment("staging")
    ctx = PipelineContext(
        "jenkins-churn-main-42", "staging", uri or "/data/churn.parquet", "churn", "0" * 40
    )
    image = pinned("staging", "train").replace("modelyard-serving", "modelyard-train-churn")
    staged = None if uri else f"/var/lib/modelyard/datasets/{'1' * 64}.parquet"
    return job_manifest(ctx, environment, image, job_name(ctx.run_id), staged)
