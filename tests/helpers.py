"""Small helpers the tests share: run the real `modelyard` command, edit environment files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it, in the current process environment."""
    return subprocess.run(
        [MODELYARD, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


DELETE = object()  # as a value in edit_environment: remove the key


def edit_environment(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """Set `modelyard:<key>` entries (dotted paths) in folder/Pulumi.<name>.yaml."""
    path = folder / f"Pulumi.{name}.yaml"
    document = yaml.safe_load(path.read_text()) if path.exists() else {"config": {}}
    config = document["config"]
    for dotted, value in changes.items():
        section, *rest = dotted.split(".")
        key = f"modelyard:{section}"
        if not rest:
            if value is DELETE:
                config.pop(key, None)
            else:
                config[key] = value
            continue
        node = config.setdefault(key, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(rest[-1], None)
        else:
            node[rest[-1]] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
