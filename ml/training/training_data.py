"""What one training process holds of its dataset: all of it, or a worker's share.

One process trains on the whole file. In a training over several workers (ml/training/distributed.py)
each worker holds only its share, read from the Parquet file without the rest
(ml/data/parquet_parts.py): its every N-th training row and the validation rows, and the leader
the holdout rows too. Every worker reads the target column whole and splits it as one process
would (the split is the same on every worker and on every rerun), and codes labels and text
categories from the whole columns, so that the rows of every worker mean the same to LightGBM.
The leader validates the file column by column, holding one column at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from modelyard.contracts.digests import file_digest
from modelyard.contracts.environment.training import TrainingSettings
from modelyard.contracts.tasks import Task
from modelyard.ml.data import parquet_parts
from modelyard.ml.data.dataset import SUFFIXES, Dataset, unreadable
from modelyard.ml.data.validation import ValidationReport, validate_columns, validate_dataset
from modelyard.ml.errors import DataValidationError
from modelyard.ml.prediction_kind import PredictionKind
from modelyard.ml.spec import DataSchema, ModelSpec
from modelyard.ml.training import mlflow_job
from modelyard.ml.training.distributed import Network
from modelyard.ml.training.features import (
    PreparedData,
    Split,
    category_names,
    encode_labels,
    is_text,
    prepare,
    prepare_rows,
    strata,
    stratified_split,
)

SCHEMA_SAMPLE_ROWS = 1_000  # column types for MLflow's dataset record


@dataclass(frozen=True)
class TrainingData:
    path: Path
    digest: str  # of the whole file, whoever holds which rows: the dataset's version
    data: PreparedData  # the rows this process holds
    split: Split  # positions in `data`; `train`: the rows this process boosts on
    kind: PredictionKind
    # The leader's (or the one process's): its validation, and what MLflow records of the file.
    report: ValidationReport | None
    record: mlflow_job.DatasetRecord | None
    source: str | None = None  # the URI the file was copied from (ml/data/source.py)


def whole(
    dataset: Dataset, spec: ModelSpec, target: str, settings: TrainingSettings
) -> TrainingData:
    report = check_dataset(dataset, spec, target)
    data = prepare(dataset.frame, target, spec.task)
    split = _split(data.labels, spec.task, settings)
    frame = dataset.frame
    record = _record(dataset.path, dataset.digest, target, len(frame), int(frame.size), frame,
                     tuple(str(c) for c in frame.columns[frame.isna().any().to_numpy()]))  # fmt: skip
    kind = prediction_kind(spec.task, data.classes, data.labels[split.train])
    return TrainingData(dataset.path, dataset.digest, data, split, kind, report, record)


def share(
    path: Path, spec: ModelSpec, target: str, settings: TrainingSettings, network: Network
) -> TrainingData:
    """This worker's share of a Parquet file; the leader validates the whole file first."""
    check_parquet(path, network.size)
    try:
        rows, header = parquet_parts.shape(path)
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(path, "parquet", exc) from None
    seen = _Seen()
    report = digest = None
    if network.leads:
        digest = file_digest(path)
        order = sorted(header, key=lambda name: name != target)  # the target first, if there
        columns = _columns(path, order, target, seen)
        report = validate_columns(str(path), digest, header, rows, columns, target,
                                  _schema(spec, target), spec.task)  # fmt: skip
        _raise_if_failed(report)
    elif target not in header:  # the leader reports it with the file's other problems
        raise DataValidationError(f"{path}: no target column {target!r}; nothing was trained")
    else:
        text = [n for n in parquet_parts.columns_that_may_hold_text(path) if n != target]
        for _ in _columns(path, [*text, target], target, seen):
            pass
    assert seen.target is not None  # read by the pass: the target is in the header
    try:
        labels, classes = encode_labels(seen.target, spec.task)
    except (ValueError, TypeError):  # only a follower gets here: the leader's checks come first
        raise DataValidationError(
            f"{path}: the target column {target!r} cannot be read as {spec.task} labels; the "
            "leader's report lists every problem of the file"
        ) from None
    whole_split = _split(labels, spec.task, settings)
    mine = network.shard(whole_split.train)
    holdout = whole_split.holdout if network.leads else whole_split.holdout[:0]
    held = np.sort(np.concatenate([mine, whole_split.valid, holdout]))
    frame = parquet_parts.read_rows(path, held)
    data = prepare_rows(frame.drop(columns=[target]), labels[held], spec.task, classes,
                        seen.categories)  # fmt: skip
    split = Split(*(np.searchsorted(held, part) for part in (mine, whole_split.valid, holdout)))
    kind = prediction_kind(spec.task, classes, labels[whole_split.train])
    record = None
    if network.leads:
        record = _record(path, digest or "", target, rows, rows * len(header), frame,
                         tuple(seen.nullable))  # fmt: skip
    return TrainingData(path, digest or "", data, split, kind, report, record)


def check_parquet(path: Path | str, workers: int) -> None:
    """A training over several workers reads parts of a Parquet file: not a CSV (`path`: or
    the URI of one)."""
    if SUFFIXES.get(Path(path).suffix.lower()) != "parquet":
        raise DataValidationError(
            f"{path}: training.kubernetes.workers is {workers}, and each worker reads only its "
            "rows of a Parquet file (a CSV has neither columns stored apart nor the types every "
            "worker must agree on). Give --data a .parquet file (pandas: "
            "`pd.read_csv(FILE).to_parquet(FILE.parquet, index=False)`)."
        )


def check_dataset(dataset: Dataset, spec: ModelSpec, target: str) -> ValidationReport:
    """Validation before any training: a failing dataset raises, nothing is trained from it."""
    report = validate_dataset(dataset, target, _schema(spec, target), spec.task)
    _raise_if_failed(report)
    return report


def prediction_kind(task: Task, classes: tuple[str, ...], trained: np.ndarray) -> PredictionKind:
    """What the model's predictions are; a regression model's bins are the deciles of the
    target it trained on (`trained`: its labels)."""
    if task == "regression":
        deciles = np.quantile(trained, np.linspace(0, 1, 11)[1:-1])
        return PredictionKind("regression", (), tuple(float(e) for e in np.unique(deciles)))
    if task == "multiclass":
        return PredictionKind("multiclass", classes, ())
    return PredictionKind("binary", classes)


def _schema(spec: ModelSpec, target: str) -> DataSchema | None:
    return spec.data_schema if target == spec.target else None


def _raise_if_failed(report: ValidationReport) -> None:
    if not report.passed:
        lines = "\n".join(f"  - {p.column}: {p.problem}" for p in report.problems)
        raise DataValidationError(
            f"{report.path}: {len(report.problems)} problem(s); nothing was trained:\n{lines}",
            report,
        )


def _split(labels: np.ndarray, task: Task, settings: TrainingSettings) -> Split:
    return stratified_split(strata(labels, task), settings.validation_fraction,
                            settings.holdout_fraction, settings.seed)  # fmt: skip


@dataclass
class _Seen:
    """What the pass over the columns learns on the way."""

    categories: dict[str, list[str]] = field(default_factory=dict)  # of the text columns
    nullable: list[str] = field(default_factory=list)  # columns with a missing value
    target: pd.Series | None = None  # kept: every worker splits and codes the labels from it


def _columns(
    path: Path, names: list[str], target: str, seen: _Seen
) -> Iterator[tuple[str, pd.Series]]:
    """Each column in turn, read alone, with what `seen` keeps of it."""
    for name in names:
        column = parquet_parts.read_column(path, name)
        if name == target:
            seen.target = column
        elif is_text(column):
            seen.categories[name] = category_names(column)
        if column.isna().any():
            seen.nullable.append(name)
        yield name, column


def _record(
    path: Path, digest: str, target: str, rows: int, elements: int, frame: pd.DataFrame,
    nullable: tuple[str, ...],
) -> mlflow_job.DatasetRecord:  # fmt: skip
    return mlflow_job.DatasetRecord(
        path=str(path.resolve()),
        name=path.name,
        digest=digest,
        target=target,
        rows=rows,
        elements=elements,
        sample=frame.sample(min(len(frame), SCHEMA_SAMPLE_ROWS), random_state=0),
        nullable=nullable,
    )
