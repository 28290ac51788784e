"""Facts about local processes the kit starts or waits on."""

from __future__ import annotations

import os
from pathlib import Path


def is_alive(pid: int) -> bool:
    """Whether a process with this id runs (one we may not signal still counts). A killed
    process whose parent has not reaped it yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or gone meanwhile
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"  # the state follows "(command name)"
