"""Platform images built once per test session and run the way the Pulumi components run them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from modelyard.infra.components.image_build import copy_image_folder

from tests.docker_helpers import RUN_ID, build_image, docker


@pytest.fixture(scope="session")
def mlflow_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tag = f"modelyard-test/mlflow:{RUN_ID}"
    context = tmp_path_factory.mktemp("mlflow-image") / "context"
    copy_image_folder("mlflow")(context)  # as `pulumi up` assembles it, the host's CA included
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
