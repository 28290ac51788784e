"""The one way the kit writes a state file: a crash leaves either its old content or its new,
never half. Checkpoints, job and pipeline state, environment files and the server's routing and
status all go through `write_atomic`."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def temp_files_of(path: Path) -> list[Path]:
    """Temp files a killed writer of `path` left beside it."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def write_atomic(
    path: Path,
    data: str | bytes,
    *,
    durable: bool = True,
    halfway: Callable[[], None] | None = None,
) -> None:
    """Replace `path` with `data` in one step. `durable` waits until the bytes and the rename
    are on disk (what must survive a power cut); the server's short-lived files skip it.
    `halfway` is called with half the data written (the promotion's crash tests kill there)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # A unique temp name: concurrent writers (server workers) never share one.
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600: the new content gets the mode the old one had (or a new
        # file's, under the umask), or a rewritten environment file would be the writer's alone.
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as handle:
            if halfway is not None:
                handle.write(raw[: len(raw) // 2])
                handle.flush()
                halfway()
                raw = raw[len(raw) // 2 :]
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
