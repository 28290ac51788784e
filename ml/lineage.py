"""Where a model came from: the code's commit and the pipeline run that trained it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from modelyard.contracts import variables


def git_commit(folder: Path) -> str:
    """The commit being trained: Jenkins' GIT_COMMIT when set, else the work tree's HEAD."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def pipeline_reason() -> str:
    """Why the pipeline run started ("" when nobody said)."""
    return os.environ.get(variables.PIPELINE_REASON, "")


def pipeline_run_id() -> str:
    """The pipeline run this training belongs to (the local runner or Jenkins' BUILD_TAG)."""
    return os.environ.get(variables.PIPELINE_RUN_ID) or os.environ.get("BUILD_TAG") or "manual"
