"""Bounded, rotated store of live inputs and predictions written by the model server.

Each worker appends JSON lines to its own file under the samples folder (no locking between
processes); a file holds at most `rows_per_file` rows and a worker keeps at most `max_files`
of them, deleting the oldest. Only the model's feature columns are stored, never headers,
keys or anything else from the request.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

# How often a server writes its buffered samples (and metrics) out: a reader sees a request's
# sample at most this long after its answer.
FLUSH_SECONDS = 1.0


class SampleWriter:
    def __init__(
        self,
        folder: Path,
        rate: float,
        max_rows: int,
        max_files: int = 10,
        rows_per_request: int = 50,
    ) -> None:
        self.folder = folder
        self.rate = rate
        self.rows_per_file = max(1, max_rows // max_files)
        self.max_files = max_files
        self.rows_per_request = rows_per_request
        self._buffer: list[bytes] = []
        self._rows_in_file = 0
        self._file_index = 0
        self._prefix = f"samples-{os.getpid()}-{int(time.time())}"
        self._random = random.Random()

    def wants(self) -> bool:
        return self.rate > 0 and self._random.random() < self.rate

    def pick(self, n_rows: int) -> list[int]:
        if n_rows <= self.rows_per_request:
            return list(range(n_rows))
        return sorted(self._random.sample(range(n_rows), self.rows_per_request))

    def add(self, version: str, row: dict[str, object], score: float | str) -> None:
        self._buffer.append(orjson.dumps({"t": time.time(), "v": version, "x": row, "p": score}))

    def flush(self) -> None:
        if not self._buffer:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        while self._buffer:
            room = self.rows_per_file - self._rows_in_file
            chunk, self._buffer = self._buffer[:room], self._buffer[room:]
            with self._path(self._file_index).open("ab") as handle:
                handle.write(b"\n".join(chunk) + b"\n")
            self._rows_in_file += len(chunk)
            if self._rows_in_file >= self.rows_per_file:
                self._file_index += 1
                self._rows_in_file = 0
                self._path(self._file_index - self.max_files).unlink(missing_ok=True)
                self._prune()

    def _prune(self) -> None:
        """Files of earlier processes (restarted workers) count too: keep the newest few."""
        files = sorted(self.folder.glob("samples-*.jsonl"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.max_files * 4)]:
            old.unlink(missing_ok=True)

    def _path(self, index: int) -> Path:
        return self.folder / f"{self._prefix}-{index:06d}.jsonl"


def read_samples(folder: Path, version: str | None = None) -> Iterator[dict[str, object]]:
    """Every stored sample (optionally of one model version), oldest file first."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("samples-*.jsonl"), key=lambda p: p.stat().st_mtime):
        for line in path.read_bytes().splitlines():
            if not line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by a crash mid-write
            if version is None or record.get("v") == version:
                yield record
