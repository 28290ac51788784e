"""The Ansible lab for the whole session: hosts started once, configured twice by the kit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.ansible.lab import Lab, Run, build_host_image, docker, open_lab


@pytest.fixture(scope="session")
def host_image(base_image: str) -> Iterator[str]:
    """The systemd+SSH test host image, built once per session and removed afterwards."""
    tag = build_host_image()
    yield tag
    docker("rmi", tag, check=False)


@dataclass(frozen=True)
class Configured:
    lab: Lab
    first: Run  # `modelyard configure` on fresh hosts
    second: Run  # the same again, through the library


@pytest.fixture(scope="session")
def configured(host_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Configured]:
    with open_lab(host_image, tmp_path_factory.mktemp("ansible-lab")) as lab:
        first = lab.cli()
        assert first.rc == 0, f"first run failed:\n{first.output[-6000:]}"
        yield Configured(lab, first, lab.library())
