"""A project as a team has one, for the tests of what a change touches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, edit_environment, with_origin


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed project (its own git history) whose staging serves churn and segment."""
    folder = tmp_path / "project"
    (folder / "checks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", folder)
    shutil.copytree(REPO / "environments", folder / "environments")
    (folder / "checks" / "test_ok.py").write_text("def test_ok() -> None:\n    assert True\n")
    edit_environment(folder / "environments", "local", {"pipeline.testPaths": ["checks"]})
    edit_environment(folder / "environments", "staging",
                     {"models": {"segment": {"localPort": 8191}}})  # fmt: skip
    with_origin(folder, tmp_path / "remote.git")  # promotions to staging are pushed there
    return folder
