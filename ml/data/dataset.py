"""Reading a dataset (CSV or Parquet) and naming its version: the hash of its content."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from modelyard.contracts.digests import file_digest
from modelyard.ml.errors import DataValidationError

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Dataset:
    path: Path
    frame: pd.DataFrame
    digest: str  # sha256 of the file's bytes: the dataset's version
    header: list[str]  # column names exactly as the file has them (duplicates kept)

    @property
    def short_digest(self) -> str:
        return self.digest[:12]


def read_dataset(path: Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(
            f"{path}: no such file. Pass an existing CSV or Parquet file to --data."
        )
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataValidationError(
            f"{path}: unsupported file type {path.suffix!r}. Use a .csv or .parquet file."
        )
    try:
        if kind == "csv":
            with path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
            frame = pd.read_csv(path, low_memory=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            header = list(pq.read_schema(path).names)
            frame = pd.read_parquet(path)
            # Arrow's allocator keeps the pages of the table the frame was converted from
            # (about 1.4 times the frame, held for the whole job): hand them back.
            pa.default_memory_pool().release_unused()
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise unreadable(path, kind, exc) from None
    return Dataset(path=path, frame=frame, digest=file_digest(path), header=header)


def unreadable(path: Path, kind: str, exc: Exception) -> DataValidationError:
    """The one message for a file that is not the CSV or Parquet its name says."""
    return DataValidationError(
        f"{path}: cannot be read as {kind.upper()} ({str(exc).splitlines()[0]}). "
        "Check the file is complete and in that format."
    )
