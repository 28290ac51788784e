"""The post-commit hook starts the local pipeline in the background, logging to a file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
                          cwd=repo, capture_output=True, text=True, check=True)  # fmt: skip


def test_a_commit_starts_the_pipeline_in_the_background(
    tmp_path: Path, environments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    state = tmp_path / "state"
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(state))
    missing = tmp_path / "no-such-data.csv"  # the background pipeline fails fast on it

    installed = run_cli("hooks", "install", "--repo", str(repo), "--data", str(missing))
    assert installed.returncode == 0, installed.stderr
    (repo / "f.txt").write_text("x")
    _git(repo, "add", "f.txt")
    started = time.monotonic()
    commit = _git(repo, "commit", "-qm", "change")
    assert time.monotonic() - started < 10  # the commit does not wait for the pipeline
    assert "modelyard: pipeline started" in commit.stdout + commit.stderr

    deadline = time.monotonic() + 120
    text = ""
    while time.monotonic() < deadline and "no such file" not in text:
        text = "".join(p.read_text() for p in (state / "logs").glob("pipeline-*.log"))
        time.sleep(0.5)
    assert "stage" in text and "no such file" in text  # it ran: checkout passed, data refused

    (repo / ".git/hooks/post-commit").write_text("#!/bin/sh\necho mine\n")
    refused = run_cli("hooks", "install", "--repo", str(repo), "--data", str(missing))
    assert refused.returncode == 2 and "was not written by modelyard" in refused.stderr
