"""Digests the kit records or names things by: the same files give the same digest anywhere."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path


def tree_digest(folder: Path, exclude: Collection[Path] = ()) -> str:
    """sha256 over every file below `folder` (relative path and bytes, in path order), so the
    same tree gives the same digest on any machine; `exclude`: relative paths left out."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if relative not in exclude:
            sha.update(str(relative).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (programs and archives are hundreds of MB)."""
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
