"""Helpers the Docker-backed tests share: the docker CLI, files written as Pulumi uploads them."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from modelyard.infra.components.registry import ContainerFile

RUN_ID = uuid.uuid4().hex[:8]


def docker_result(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], capture_output=True, input=input, check=False)


def docker(*args: str, check: bool = True, input: bytes | None = None) -> str:
    result = docker_result(*args, input=input)
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}"
        )
    return result.stdout.decode().strip()


def copy_files(container: str, files: Mapping[str, ContainerFile]) -> None:
    """Write files into a created container as pulumi-docker `uploads` do (owner, mode)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders = {str(Path(path).parent) for path in files}
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, spec in files.items():
            data = str(spec.content).encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), int(spec.mode, 8)
            info.uid = info.gid = int(spec.owner)
            tar.addfile(info, io.BytesIO(data))
    docker("cp", "-", f"{container}:/", input=buffer.getvalue())


def wait_for(
    probe: Callable[[], bool], timeout: float, what: str, logs_of: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    logs = ""
    if logs_of:  # the server logs to stderr
        result = docker_result("logs", "--tail", "40", logs_of)
        logs = (result.stdout + result.stderr).decode(errors="replace")
    raise AssertionError(f"{what} not ready after {timeout:.0f}s\n{logs}")


def build_image(tag: str, context: Path) -> None:
    started = time.monotonic()
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True)
    print(f"built {tag} in {time.monotonic() - started:.0f}s")
