"""Starts the cluster's programs as detached processes (they outlive the command that started
them, like `make demo KEEP=1`'s servers), remembers them by pid file, waits for them, stops them."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from modelyard.contracts.environment import ConfigError
from modelyard.infra.local_cluster.components import Component
from modelyard.infra.local_cluster.settings import ClusterPaths
from modelyard.pipelines.processes import is_alive

# Loopback health endpoints serve the cluster's own self-signed certificates.
_LOOPBACK_TLS = ssl.create_default_context()
_LOOPBACK_TLS.check_hostname = False
_LOOPBACK_TLS.verify_mode = ssl.CERT_NONE


class ClusterStartFailed(ConfigError):
    """A program of the cluster exited or did not become healthy in time."""


def pid_of(paths: ClusterPaths, name: str) -> int | None:
    try:
        pid = int(paths.pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_alive(pid) else None


def start(paths: ClusterPaths, component: Component) -> int:
    paths.run.mkdir(parents=True, exist_ok=True)
    log = open(paths.logs / f"{component.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
    with log:
        process = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            start_new_session=True,  # not killed with the terminal or the runner that started it
        )
    paths.pid_file(component.name).write_text(f"{process.pid}\n")
    return process.pid


def healthy(component: Component) -> bool:
    if not component.health_url:
        return True
    try:
        with urllib.request.urlopen(component.health_url, timeout=2, context=_LOOPBACK_TLS) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_until(
    paths: ClusterPaths,
    component: Component,
    ready: Callable[[], bool],
    timeout: float,
    what: str = "healthy",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_of(paths, component.name) is None:
            raise ClusterStartFailed(
                f"{component.name} exited while starting:\n{log_tail(paths, component.name)}"
            )
        if ready():
            return
        time.sleep(0.3)
    raise ClusterStartFailed(
        f"{component.name} was not {what} after {timeout:.0f}s:\n{log_tail(paths, component.name)}"
    )


def stop(paths: ClusterPaths, name: str, grace: float = 15.0) -> None:
    pid = pid_of(paths, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while is_alive(pid):
            time.sleep(0.05)
    paths.pid_file(name).unlink(missing_ok=True)


def log_tail(paths: ClusterPaths, name: str, lines: int = 15) -> str:
    log = paths.logs / f"{name}.log"
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {log})"
    return "\n".join(f"  {line}" for line in tail) + f"\n  (whole log: {log})"


def unmount_under(*roots: Path) -> None:
    """The kubelet's volume mounts and the sandboxes' namespaces outlive the processes that
    made them: unmount everything under the cluster's folders, deepest first."""
    prefixes = tuple(f"{root.resolve()}/" for root in roots)
    with open("/proc/self/mounts") as table:
        targets = [line.split()[1].encode().decode("unicode_escape") for line in table]
    for target in sorted({t for t in targets if t.startswith(prefixes)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
