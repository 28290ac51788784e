"""Where the tools `make tools` and `make cluster-tools` build live, at the versions
tools/versions.env pins (one cache per machine, outside the checkout: tools/lib.sh)."""

from __future__ import annotations

import os
from pathlib import Path


def pinned_versions() -> dict[str, str]:
    """tools/versions.env: what the tool builds make and the SDKs are pinned to."""
    text = (Path(__file__).resolve().parents[1] / "tools" / "versions.env").read_text("utf-8")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def tools_dir() -> Path:
    return Path(os.environ.get("MODELYARD_TOOLS_DIR") or Path.home() / ".cache/modelyard/tools")
