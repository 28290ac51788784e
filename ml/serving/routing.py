"""What the server answers with: the stable version, an optional candidate and how traffic splits.

The supervisor writes this as routing.json (atomically); every worker follows the file and swaps
its in-memory snapshot in one assignment, so a request in flight keeps the models it started with.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import orjson
from modelyard.contracts.atomic_file import write_atomic

Mode = Literal["canary", "ab", "shadow"]


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str
    path: str
    run_id: str | None = None
    uri: str = ""


@dataclass(frozen=True)
class Routing:
    generation: int = 0
    stable: VersionRef | None = None
    candidate: VersionRef | None = None
    mode: Mode | None = None
    weight: int = 0  # percent of traffic the candidate answers (canary, ab)
    message: str = "starting: no model loaded yet"
    # The supervisor has not yet found out what to serve: workers wait before listening.
    resolving: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Routing:
        raw = orjson.loads(data)
        for key in ("stable", "candidate"):
            if raw.get(key):
                raw[key] = VersionRef(**raw[key])
        return cls(**raw)


def write_routing(path: Path, routing: Routing) -> None:
    write_atomic(path, routing.to_json(), durable=False)


def read_routing(path: Path) -> Routing:
    return Routing.from_json(path.read_bytes())


def sticky_bucket(key: str) -> int:
    """0..99, the same for the same key in every worker and every restart (A/B assignment)."""
    return zlib.crc32(key.encode("utf-8")) % 100
