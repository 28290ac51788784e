"""The docker command line as the pipeline uses it: is an engine there, run or stream a command."""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Mapping


def engine_problem() -> str | None:
    """Why Docker cannot be used here, or None when an engine answers."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "no Docker engine answers `docker info` (start dockerd)"
    return None


def docker(
    *args: str, input: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], input=input, env=env, capture_output=True, text=True, check=False
    )


def stream(
    args: list[str], say: Callable[[str], None], show: Callable[[str], bool] = lambda _: True
) -> tuple[int, list[str]]:
    """Run `docker ARGS`, passing the lines `show` picks to `say`; the exit code and last lines."""
    process = subprocess.Popen(
        ["docker", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tail: deque[str] = deque(maxlen=20)
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(line.rstrip())
        if show(line):
            say(line.rstrip())
    return process.wait(), list(tail)
