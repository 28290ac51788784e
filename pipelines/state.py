"""The one ignored folder where local runs keep their state (MLflow data, checkpoints, logs)."""

from __future__ import annotations

import os
from pathlib import Path

from modelyard.contracts.environment import project_root

STATE_DIR_VAR = "MODELYARD_STATE_DIR"


def state_dir() -> Path:
    override = os.environ.get(STATE_DIR_VAR)
    folder = Path(override) if override else project_root() / ".modelyard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
