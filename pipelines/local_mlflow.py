"""A real `mlflow server` process on SQLite, for the embedded default and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from modelyard.pipelines.errors import PipelineError


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes] | None  # None when an already-running server was reused
    log_path: Path

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # The server runs in its own process group (uvicorn/gunicorn workers): stop them all.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_server(
    state_dir: Path, port: int | None = None, timeout: float = 240
) -> MlflowServer:
    """Start `mlflow server` with its database and artifacts under `state_dir`; reuse one already
    answering on `port` (a second `make demo` finds the first one's server still running)."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = state_dir / "mlflow-server.log"
    if is_up(url):
        return MlflowServer(url, None, log_path)
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{state_dir / 'mlflow.db'}",
        "--artifacts-destination", str(state_dir / "artifacts"),
    ]  # fmt: skip
    log = log_path.open("ab")
    # MLflow's job runner serves GenAI features modelyard doesn't use; it is four more processes
    # polling the database, taking CPU from training on the same machine.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=state_dir,
                               start_new_session=True, env=env)  # fmt: skip
    server = MlflowServer(url, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_up(url):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.3)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise PipelineError(f"mlflow server did not start on {url} (log {log_path}):\n{tail}")
