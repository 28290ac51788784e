"""The Ansible code passes ansible-lint (production profile, no-log-password on) and yamllint."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO

ANSIBLE = REPO / "ansible"
BIN = REPO / ".venv" / "bin"


def test_lint_config_asks_for_the_production_profile_and_no_log_password() -> None:
    config = (ANSIBLE / ".ansible-lint").read_text(encoding="utf-8")
    assert "profile: production" in config
    assert "no-log-password" in config


@pytest.mark.slow
def test_ansible_lint_passes_with_the_production_profile() -> None:
    run = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--strict", "--profile", "production"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Profile 'production' was required, and it passed" in run.stderr + run.stdout


def test_yamllint_passes() -> None:
    run = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "."],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
