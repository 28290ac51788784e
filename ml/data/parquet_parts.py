"""Parts of a Parquet file, read without the rest: one column, or some rows.

A worker of a training over several (ml/training/distributed.py) holds only its rows: it reads the
target column whole (every worker splits the rows alike), the text columns whole (every worker
codes their categories alike), and of the other rows none. Parquet's columns are stored apart and
its rows in groups, so neither read goes through the whole table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 65_536  # rows decoded at a time while keeping some of them


def shape(path: Path) -> tuple[int, list[str]]:
    """The number of rows and the column names, from the file's footer."""
    footer = pq.ParquetFile(path)
    return footer.metadata.num_rows, list(footer.schema_arrow.names)


def read_column(path: Path, name: str) -> pd.Series:
    """One column, typed as `pd.read_parquet` types it in the whole frame."""
    return pq.read_table(path, columns=[name]).to_pandas()[name]


def columns_that_may_hold_text(path: Path) -> list[str]:
    """The columns of any type but numbers and booleans, from the file's schema alone."""
    return [field.name for field in pq.read_schema(path) if not (
        pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        or pa.types.is_boolean(field.type))]  # fmt: skip


def read_rows(path: Path, rows: np.ndarray) -> pd.DataFrame:
    """The rows at these positions (sorted), in file order, numbered from 0 as in a new frame."""
    source = pq.ParquetFile(path)
    kept: list[pa.RecordBatch] = []
    start = 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS):
        end = start + batch.num_rows
        inside = rows[np.searchsorted(rows, start) : np.searchsorted(rows, end)]
        if len(inside):
            kept.append(batch.take(pa.array(inside - start)))
        start = end
    frame = pa.Table.from_batches(kept, schema=source.schema_arrow).to_pandas()
    # Arrow's allocator keeps the decoded pages: hand them back (as read_dataset does).
    pa.default_memory_pool().release_unused()
    return frame
