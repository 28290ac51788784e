"""A real Prometheus (Debian's, `make monitoring-tools`) for the tests: the tools, a process for the
length of a block, polling. Shared by tests/monitoring and the cluster's monitoring test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.pipelines.local_mlflow import free_port

TOOLS = ("promtool", "prometheus", "prometheus-node-exporter")


def require_tools() -> dict[str, str]:
    """Debian's Prometheus tools: skip with the reason without them, fail in CI."""
    found = {name: shutil.which(name) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if not missing:
        return {name: str(path) for name, path in found.items()}
    problem = f"{', '.join(missing)} not on PATH (`make monitoring-tools` installs Debian's)"
    if os.environ.get("MODELYARD_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(f"MODELYARD_REQUIRE_PROMETHEUS=1 but {problem}")
    pytest.skip(f"Prometheus-backed test: {problem}")


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """The first truthy result of `check`, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def running(command: list[str], log: Path, ready_url: str, what: str) -> Iterator[None]:
    """A process for the length of the block, stopped (then killed) whatever happens."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
            return answers(ready_url)

        poll(ready, 60, f"{what} to answer {ready_url}", every=0.2)
        yield
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def prometheus(
    prometheus_tools: dict[str, str], config: dict[str, Any], folder: Path
) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 with `config`; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        prometheus_tools["prometheus"],
        f"--config.file={config_file}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    with running(command, folder / "prometheus.log", f"{url}/-/ready", "prometheus"):
        yield url
