"""The Ansible lab for this folder's tests: hosts started once, configured twice by the kit, and
removed before the next folder's tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.node_containers import build_node_image

from tests.ansible.lab import Lab, Run, build_host_image, docker, open_lab


@pytest.fixture(scope="session")
def host_image(base_image: str) -> Iterator[str]:
    """The systemd+SSH test host image, built once per session and removed afterwards."""
    tag = build_host_image()
    yield tag
    docker("rmi", tag, check=False)


@pytest.fixture(scope="session")
def node_image(base_image: str) -> str:
    """The Kubernetes node image the local cluster runs (kept: `cluster up` reuses it)."""
    return build_node_image()


@dataclass(frozen=True)
class Configured:
    lab: Lab
    first: Run  # `modelyard configure` on fresh hosts
    second: Run  # the same again, through the library


@pytest.fixture(scope="package")
def configured(
    host_image: str, node_image: str, cluster_tools: Binaries,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Configured]:  # fmt: skip
    work = tmp_path_factory.mktemp("ansible-lab")
    with open_lab(host_image, node_image, cluster_tools, work) as lab:
        first = lab.cli()
        assert first.rc == 0, f"first run failed:\n{first.output[-6000:]}"
        yield Configured(lab, first, lab.library())
