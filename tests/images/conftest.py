"""Platform images built once per test session and run the way the Pulumi components run them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelyard.infra.components.mlflow_server import IMAGE_CONTEXT as MLFLOW_CONTEXT

from tests.docker_helpers import RUN_ID, build_image, docker


def _host_ca_bundle() -> Path | None:
    """The CA bundle this machine trusts (a TLS-intercepting proxy's CA lives there)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mlflow_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tag = f"modelyard-test/mlflow:{RUN_ID}"
    context = tmp_path_factory.mktemp("mlflow-image") / "context"
    shutil.copytree(MLFLOW_CONTEXT, context)
    bundle = _host_ca_bundle()
    if bundle is not None:  # see infra/images/mlflow/build-ca/README.md
        shutil.copy(bundle, context / "build-ca" / "host.crt")
    build_image(tag, context)
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """(kind, name) pairs removed after the test: containers first, then volumes."""
    created: list[tuple[str, str]] = []
    yield created
    for kind, name in sorted(created, key=lambda item: item[0] != "container"):
        if kind == "container":
            docker("rm", "-f", "-v", name, check=False)
        elif kind == "volume":
            docker("volume", "rm", "-f", name, check=False)
        elif kind == "image":
            docker("rmi", "-f", name, check=False)
