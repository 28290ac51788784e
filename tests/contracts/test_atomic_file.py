"""write_atomic, the one way the kit rewrites a file (environment files on a promotion, state):
the new content keeps the file's mode. It once left every rewritten file 0600 (mkstemp's mode):
a staging file rewritten by an edit was then unreadable to a training pod's user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from modelyard.contracts.atomic_file import write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_rewritten_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path: Path) -> None:
    shared = tmp_path / "Pulumi.staging.yaml"
    shared.write_text("config: {}\n")
    shared.chmod(0o644)
    write_atomic(shared, "config: {a: 1}\n")
    assert shared.read_text() == "config: {a: 1}\n" and _mode(shared) == 0o644

    private = tmp_path / "secret-state.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_atomic(private, "{}")
    assert _mode(private) == 0o600  # what was the writer's alone stays so

    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.json", "{}")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "new.json") == 0o640
