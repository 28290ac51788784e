"""The registry image, configured exactly as the Registry component configures it, with the real
docker client: anonymous pushes refused, login with the generated credentials, push/pull with the
same digest, deletes enabled, TLS served, non-root."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from modelyard.infra.components import registry

from tests.docker_helpers import RUN_ID, copy_files, docker, docker_result
from tests.registry import registry_status

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def docker_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private docker client config, so logins never touch the user's ~/.docker."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


@pytest.fixture
def small_image(tmp_path: Path, running_registry: dict, cleanup: list) -> str:  # type: ignore[type-arg]
    context = tmp_path / "image"
    context.mkdir()
    (context / "hello.txt").write_text(f"modelyard {RUN_ID}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    tag = f"{running_registry['address']}/modelyard/hello:{RUN_ID}"
    docker("build", "-q", "-t", tag, str(context))
    cleanup.append(("image", tag))
    return tag


def test_registry_serves_tls_and_requires_auth(running_registry: dict) -> None:  # type: ignore[type-arg]
    port, context = running_registry["port"], running_registry["tls"]
    assert registry_status(port, context) == 401
    assert registry_status(port, context, f"{running_registry['username']}:wrong") == 401
    good = f"{running_registry['username']}:{running_registry['password']}"
    assert registry_status(port, context, good) == 200


def test_anonymous_push_is_refused(docker_client: Path, small_image: str) -> None:
    result = docker_result("push", small_image)
    assert result.returncode != 0
    assert "no basic auth credentials" in result.stderr.decode()


def test_docker_client_logs_in_pushes_and_pulls_the_same_digest(
    running_registry: dict,
    docker_client: Path,
    small_image: str,  # type: ignore[type-arg]
) -> None:
    address = running_registry["address"]
    wrong = _login(address, running_registry["username"], "not-the-password")
    assert wrong.returncode != 0
    login = _login(address, running_registry["username"], running_registry["password"])
    assert login.returncode == 0, login.stderr

    pushed = docker("push", small_image)
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest, pushed
    docker("rmi", small_image)
    docker("pull", small_image)
    repo_digests = docker("image", "inspect", "--format", "{{json .RepoDigests}}", small_image)
    assert f"@{digest[1]}" in repo_digests

    # deletes are enabled: the manifest can be removed by digest, then it is gone
    repository = small_image.split("/", 1)[1].rsplit(":", 1)[0]
    auth = b64encode(f"{running_registry['username']}:{running_registry['password']}".encode())
    url = f"https://{address}/v2/{repository}/manifests/{digest[1]}"
    request = urllib.request.Request(url, method="DELETE")
    request.add_header("Authorization", f"Basic {auth.decode()}")
    with urllib.request.urlopen(request, context=running_registry["tls"], timeout=60) as response:
        assert response.status == 202
    docker("rmi", small_image)
    gone = docker_result("pull", small_image)
    assert gone.returncode != 0 and "not found" in gone.stderr.decode().lower()


def test_garbage_collection_runs_against_the_read_only_store(
    running_registry: dict,  # type: ignore[type-arg]
    registry_image: str,
    cleanup: list,  # type: ignore[type-arg]
) -> None:
    settings = running_registry["settings"].model_copy(
        update={"read_only": True, "garbage_collect": True}
    )
    config = registry.render_config(settings, "a-test-http-secret")
    files = registry.container_files(settings, *running_registry["files"], config)
    config = yaml.safe_load(files[registry.CONFIG_PATH].content)
    assert config["storage"]["maintenance"]["readonly"]["enabled"] is True
    name = f"modelyard-test-registry-gc-{RUN_ID}"
    docker(
        "create", "--name", name, "--user", registry.RUN_AS,
        "-v", f"{running_registry['volume']}:{registry.DATA_DIR}",
        registry_image, *registry.garbage_collect_arguments(),
    )  # fmt: skip
    cleanup.append(("container", name))
    copy_files(name, files)
    result = subprocess.run(
        ["docker", "start", "--attach", name], capture_output=True, timeout=120, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "blobs marked" in output


def test_registry_runs_as_its_non_root_user(running_registry: dict) -> None:  # type: ignore[type-arg]
    uid = docker("exec", running_registry["name"], "id", "-u")
    assert uid == registry.RUN_AS != "0"
    # the key and htpasswd are readable by that user only
    modes = docker("exec", running_registry["name"], "stat", "-c", "%a %u", registry.KEY_PATH)
    assert modes == f"400 {registry.RUN_AS}"


def _login(address: str, username: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "login", address, "--username", username, "--password-stdin"],
        input=password, capture_output=True, text=True, check=False,
    )  # fmt: skip
