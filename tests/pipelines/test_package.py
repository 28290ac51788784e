"""The package stage with a registry: the serving image built with the model baked in, pushed
with the environment's credentials to the platform's registry (auth and TLS as provisioned), and
the digest the registry serves recorded on the model version. Without Docker: the artifact alone,
or one clear failure when the environment requires the image."""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from modelyard.contracts.tags import Gate, Lineage, ServingImage
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.promotion import envfile

from tests.docker_helpers import docker, docker_result
from tests.helpers import edit_environment, run_cli
from tests.serving.helpers import register, train_booster

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PASSWORD_VAR = "MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def pipeline_run(
    tracking: str, environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A freshly registered model and a pipeline run that has reached the package stage."""
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    edit_environment(environments, "local", {"mlflow.trackingUri": tracking})
    model = f"package-{uuid.uuid4().hex[:8]}"
    version = register(*train_booster(rounds=20), model)
    run_id = f"package-{model}"
    PipelineContext(run_id, "local", str(tmp_path / "unused.csv"), model=model,
                    version=int(version)).save()  # fmt: skip
    return {"model": model, "version": version, "run_id": run_id}


def _push_to(environments: Path, registry: str, username: str = "modelyard", **more: Any) -> None:
    package = {"registry": registry, "username": username,
               "password": {"secure": "v1:ciphertext-held-by-pulumi"}, **more}  # fmt: skip
    edit_environment(environments, "local", {"pipeline.package": package})


@pytest.fixture
def packaging(
    pipeline_run: dict[str, str], environments: Path, running_registry: dict[str, Any]
) -> Iterator[dict[str, str]]:
    """The run's environment pushes to the test registry."""
    _push_to(environments, running_registry["address"], running_registry["username"])
    yield pipeline_run
    docker_result("rmi", f"{running_registry['address']}/modelyard-serving:"
                         f"{pipeline_run['model']}-v{pipeline_run['version']}")  # fmt: skip


def _package(run_id: str, password: str | None, **env: str) -> Any:
    if password is not None:
        env[PASSWORD_VAR] = password
    return run_cli("pipeline", "stage", "package", "local", "--data", "unused.csv",
                   "--run-id", run_id, env=env)  # fmt: skip


def _manifest(registry: dict[str, Any], repository: str, tag: str, auth: bool) -> tuple[int, str]:
    """The registry's answer for repository:tag: status and Docker-Content-Digest."""
    request = urllib.request.Request(
        f"https://{registry['address']}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_V2},
    )
    if auth:
        token = b64encode(f"{registry['username']}:{registry['password']}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context: ssl.SSLContext = registry["tls"]
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.mark.docker
def test_package_pushes_the_serving_image_and_records_the_digest_the_registry_serves(
    packaging: dict[str, str], running_registry: dict[str, Any], tmp_path: Path
) -> None:
    model, version = packaging["model"], packaging["version"]
    result = _package(packaging["run_id"], running_registry["password"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert running_registry["password"] not in output

    tags = MlflowClient().get_model_version(model, version).tags
    tag = f"{model}-v{version}"
    status, served = _manifest(running_registry, "modelyard-serving", tag, auth=True)
    assert status == 200 and served.startswith("sha256:")
    assert tags["modelyard.image.digest"] == served
    image = f"{running_registry['address']}/modelyard-serving:{tag}@{served}"
    assert tags["modelyard.image.ref"] == image
    assert len(tags["modelyard.package.digest"]) == 64  # the artifact's digest is kept too
    assert f"pushed {running_registry['address']}/modelyard-serving:{tag} ({served})" in output
    assert _manifest(running_registry, "modelyard-serving", tag, auth=False)[0] == 401

    # What was pushed is the model server with this very version baked in.
    client = tmp_path / "docker-config"
    client.mkdir()
    as_client = ("--config", str(client))
    login = docker_result(*as_client, "login", running_registry["address"], "--username",
                          running_registry["username"], "--password-stdin",
                          input=running_registry["password"].encode())  # fmt: skip
    assert login.returncode == 0, login.stderr
    docker(*as_client, "pull", image)
    port, name = free_port(), f"modelyard-packaged-{model}"
    docker("run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/tmp",
           "-p", f"127.0.0.1:{port}:8080", image)  # fmt: skip
    try:
        answer = _wait_for_version(f"http://127.0.0.1:{port}/version")
        assert (answer["model_name"], str(answer["model_version"])) == (model, version)
    finally:
        docker_result("rm", "-f", name)
        docker_result("rmi", image)


@pytest.mark.docker
def test_the_image_the_package_stage_pushed_is_the_one_promotion_writes_for_pulumi_up(
    packaging: dict[str, str], running_registry: dict[str, Any], environments: Path
) -> None:
    """The hand-off between two stages: package tags the version, promotion reads the tag and
    writes the image into the environment file `pulumi up` reads."""
    model, version = packaging["model"], packaging["version"]
    # What the train stage records on every version it registers (this one was logged by hand).
    client = MlflowClient()
    run_id = client.get_model_version(model, version).run_id
    assert run_id is not None
    client.log_metric(run_id, "roc_auc", 0.91)
    recorded = {
        **Lineage("local", "0" * 40, packaging["run_id"], "d" * 64, "data.csv").to_tags(),
        **Gate("roc_auc >= 0.5", "0.910000", passed=True).to_tags(),
    }
    for key, value in recorded.items():
        client.set_model_version_tag(model, version, key, value)
    edit_environment(environments, "local", {"serving.modelName": model})

    packaged = _package(packaging["run_id"], running_registry["password"])
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    promoted = run_cli("promote", model, "--to", "local", "--version", version, "--json")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr

    pushed = ServingImage.from_tags(client.get_model_version(model, version).tags)
    assert pushed is not None
    status, served = _manifest(running_registry, "modelyard-serving", f"{model}-v{version}", True)
    assert status == 200 and pushed.digest == served and pushed.ref.endswith(f"@{served}")
    written = envfile.read_serving(environments / "Pulumi.local.yaml")
    assert (written["desiredVersion"], written["image"]) == (int(version), pushed.ref)
    assert written["stableVersion"] is None  # docker serves one version at a time


@pytest.mark.docker
def test_a_wrong_registry_password_fails_the_stage_with_one_message_and_records_no_image(
    packaging: dict[str, str], running_registry: dict[str, Any]
) -> None:
    result = _package(packaging["run_id"], "not-the-password")
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = result.stderr.strip().splitlines()
    assert message.startswith(
        f"error: registry {running_registry['address']} refused the login of 'modelyard'"
    )
    assert PASSWORD_VAR in message and "not-the-password" not in result.stdout + message
    tags = MlflowClient().get_model_version(packaging["model"], packaging["version"]).tags
    assert "modelyard.image.digest" not in tags and "modelyard.image.ref" not in tags
    tag = f"{packaging['model']}-v{packaging['version']}"
    assert _manifest(running_registry, "modelyard-serving", tag, auth=True)[0] == 404


@pytest.mark.docker
def test_a_missing_registry_password_names_the_variable_to_set(
    packaging: dict[str, str], environments: Path
) -> None:
    result = _package(packaging["run_id"], None)
    assert result.returncode == 2
    assert f"modelyard:pipeline.package.password is a secret; set {PASSWORD_VAR}" in result.stderr
    assert str(environments / "Pulumi.local.yaml") in result.stderr


NO_DOCKER = {"PATH": str(Path(sys.executable).parent)}  # the kit's own commands, no docker client


def test_without_docker_a_registry_environment_fails_with_the_fix(
    pipeline_run: dict[str, str], environments: Path
) -> None:
    _push_to(environments, "127.0.0.1:5443")
    result = _package(pipeline_run["run_id"], "unused", **NO_DOCKER)
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = result.stderr.strip().splitlines()
    assert (
        "modelyard:pipeline.package pushes the serving image to 127.0.0.1:5443, but the " in message
    )
    assert (
        "docker client is not installed. Start Docker, or set modelyard:pipeline.package.requireDocker to false"
        in message
    )
    tags = MlflowClient().get_model_version(pipeline_run["model"], pipeline_run["version"]).tags
    assert "modelyard.image.digest" not in tags


def test_without_docker_the_artifact_is_the_package_and_the_stage_says_so(
    pipeline_run: dict[str, str], environments: Path
) -> None:
    _push_to(environments, "127.0.0.1:5443", requireDocker=False)
    result = _package(pipeline_run["run_id"], "unused", **NO_DOCKER)
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert (
        "serving image: not built (the docker client is not installed); the artifact is the package"
        in output
    )
    tags = MlflowClient().get_model_version(pipeline_run["model"], pipeline_run["version"]).tags
    assert len(tags["modelyard.package.digest"]) == 64 and "modelyard.image.digest" not in tags


def _wait_for_version(url: str, timeout: float = 120.0) -> dict[str, Any]:
    """The server's /version once it serves a model: it answers while still loading one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer: dict[str, Any] = json.loads(response.read())
            if answer.get("ready") or time.monotonic() > deadline:
                return answer
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)
