"""The MLflow image, configured exactly as the MlflowServer component configures it: anonymous
calls and the default admin password refused, an authenticated client logs a run, registers a
model and sets an alias, artifacts are proxied and `..` paths refused, non-root."""

from __future__ import annotations

import http.client
import secrets
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelyard.contracts.environment import ConfigError, load_environment
from modelyard.infra.components import mlflow_server as component
from modelyard.infra.components.container_secrets import SECRETS_DIR
from modelyard.infra.components.registry import ContainerFile
from modelyard.pipelines.local_mlflow import free_port

from tests.docker_helpers import RUN_ID, copy_files, docker, docker_result, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.integration]


def _create(image: str, name: str, volume: str, port: int, admin_password: str) -> None:
    """`docker create` + uploads: the same command and files as the component, no secret in the
    container's environment."""
    platform = load_environment("local").platform
    assert platform is not None
    settings = platform.mlflow
    hosts = component.allowed_hosts(settings, platform.docker.address, port)
    secret_files = component.server_secrets(
        component.backend_store_uri(settings, None), secrets.token_urlsafe(32)
    )
    docker(
        "create", "--name", name, "--user", component.RUN_AS,
        "-p", f"127.0.0.1:{port}:{component.CONTAINER_PORT}",
        "-v", f"{volume}:{component.DATA_DIR}",
        image, *component.server_arguments(settings, hosts),
    )  # fmt: skip
    ini = component.render_auth_ini(
        settings, component.auth_database_uri(settings, None), admin_password
    )
    files = {component.AUTH_INI_PATH: ContainerFile(ini, "0400", component.RUN_AS)}
    for variable, value in secret_files.items():
        files[f"{SECRETS_DIR}/{variable}"] = ContainerFile(value, "0400", component.RUN_AS)
    copy_files(name, files)


def _get(url: str, auth: tuple[str, str] | None = None, host: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode())
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@pytest.fixture(scope="module")
def server(mlflow_image: str) -> Iterator[dict[str, Any]]:
    name = volume = f"modelyard-test-mlflow-{RUN_ID}"
    port = free_port()
    password = secrets.token_urlsafe(24)
    docker("volume", "create", volume)
    try:
        _create(mlflow_image, name, volume, port, password)
        docker("start", name)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{url}/health") == 200, 300, "mlflow server", logs_of=name)
        yield {"name": name, "url": url, "port": port, "auth": ("admin", password)}
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"


def test_anonymous_calls_and_the_default_password_are_refused(server: dict[str, Any]) -> None:
    url = server["url"] + SEARCH
    assert _get(url) == 401
    assert _get(url, ("admin", component.DEFAULT_ADMIN_PASSWORD)) == 401
    assert _get(url, ("admin", "not-" + server["auth"][1])) == 401
    assert _get(url, server["auth"]) == 200


def test_unknown_host_headers_are_refused(server: dict[str, Any]) -> None:
    url = server["url"] + SEARCH
    assert _get(url, server["auth"], host="attacker.example") == 403
    assert _get(url, server["auth"], host=f"localhost:{server['port']}") == 200


def test_authenticated_client_logs_registers_and_aliases(
    server: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server["auth"][0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server["auth"][1])
    client = MlflowClient(tracking_uri=server["url"], registry_uri=server["url"])
    experiment = client.create_experiment(f"platform-test-{RUN_ID}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "roc_auc", 0.91)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)

    # artifacts went through the server's proxy, not to a path this client can see
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/MLmodel"]
    listing = docker("exec", server["name"], "find", component.ARTIFACTS_DIR, "-name", "MLmodel")
    assert listing.endswith("model/MLmodel")

    name = f"churn-{RUN_ID}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "staging", version.version)
    aliased = client.get_model_version_by_alias(name, "staging")
    assert aliased.version == version.version and aliased.run_id == run.info.run_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/../../../etc/passwd"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/x/%2E%2E/%2E%2E/etc/passwd"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/../outside.txt"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=../../etc"),
    ],
)
def test_artifact_paths_with_dot_dot_are_refused(
    server: dict[str, Any], method: str, path: str
) -> None:
    # http.client sends the path as written (urllib would not normalise it, but be explicit)
    connection = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=120)
    token = b64encode(":".join(server["auth"]).encode()).decode()
    connection.request(
        method, path, body=b"x" if method == "PUT" else None,
        headers={"Authorization": f"Basic {token}"},
    )  # fmt: skip
    response = connection.getresponse()
    body = response.read().decode(errors="replace")
    connection.close()
    assert response.status == 400, (response.status, body)
    assert "root:" not in body
    outside = docker_result(
        "exec", server["name"], "test", "-e", f"{component.DATA_DIR}/outside.txt"
    )
    assert outside.returncode != 0


def test_server_runs_as_non_root_and_keeps_secrets_off_its_command_line_and_environment(
    server: dict[str, Any],
) -> None:
    assert docker("exec", server["name"], "id", "-u") == component.RUN_AS
    inspected = docker("inspect", server["name"])
    assert server["auth"][1] not in inspected
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in inspected
    mode = docker("exec", server["name"], "stat", "-c", "%a %u", component.AUTH_INI_PATH)
    assert mode == f"400 {component.RUN_AS}"


def test_the_default_admin_password_is_refused_before_and_at_start(mlflow_image: str) -> None:
    settings = load_environment("local").platform.mlflow  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="password1234"):
        component.render_auth_ini(settings, "sqlite:///x.db", component.DEFAULT_ADMIN_PASSWORD)
    # the image refuses it too, should anyone start it by hand with the old default
    name = f"modelyard-test-mlflow-default-{RUN_ID}"
    try:
        docker(
            "create", "--name", name,
            "-e", f"MLFLOW_FLASK_SERVER_SECRET_KEY={secrets.token_urlsafe(32)}",
            mlflow_image, *component.server_arguments(settings, ["127.0.0.1"]),
        )  # fmt: skip
        placeholder = secrets.token_urlsafe(16)
        ini = component.render_auth_ini(
            settings, component.auth_database_uri(settings, None), placeholder
        ).replace(placeholder, component.DEFAULT_ADMIN_PASSWORD)
        copy_files(name, {component.AUTH_INI_PATH: ContainerFile(ini, "0400", component.RUN_AS)})
        result = subprocess.run(
            ["docker", "start", "--attach", name], capture_output=True, timeout=120, check=False
        )
        assert result.returncode != 0
        assert "insecure default password" in (result.stdout + result.stderr).decode()
    finally:
        docker("rm", "-f", "-v", name, check=False)
