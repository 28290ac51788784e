"""Checks a dataset before any training: the declared schema, and what can always be checked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from modelyard.contracts.tasks import Task
from modelyard.ml.data.dataset import Dataset
from modelyard.ml.spec import ColumnSpec, DataSchema

DEFAULT_MIN_ROWS = 100
_EXAMPLES = 3
MIN_CLASS_ROWS = 3  # stratified_split puts one row of each class in each part at least
MAX_CLASSES = 100


@dataclass(frozen=True)
class Problem:
    column: str  # "(dataset)" for problems of the whole file
    problem: str


@dataclass
class ValidationReport:
    path: str
    digest: str
    rows: int
    columns: int
    target: str
    schema_checked: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def validate_dataset(
    dataset: Dataset, target: str, schema: DataSchema | None, task: Task = "binary"
) -> ValidationReport:
    frame = dataset.frame
    order = [target] if target in frame.columns else []
    order += [name for name in frame.columns if name != target]
    columns = ((str(name), frame[name]) for name in order)
    return validate_columns(str(dataset.path), dataset.digest, dataset.header, len(frame),
                            columns, target, schema, task)  # fmt: skip


def validate_columns(
    path: str,
    digest: str,
    header: list[str],
    rows: int,
    columns: Iterable[tuple[str, pd.Series]],
    target: str,
    schema: DataSchema | None,
    task: Task = "binary",
) -> ValidationReport:
    """The checks, one column at a time: `columns` may read each from the file as it is asked
    for (the target first, for its problems to come first), so only one is held at once."""
    report = ValidationReport(path=path, digest=digest, rows=rows, columns=len(header),
                              target=target, schema_checked=schema is not None)  # fmt: skip
    add = report.problems.append

    duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
    for name in duplicates:
        add(Problem(name, "the column name appears more than once: rename or drop the copies"))
    min_rows = schema.min_rows if schema else DEFAULT_MIN_ROWS
    if rows < min_rows:
        add(Problem("(dataset)", f"{rows} rows, at least {min_rows} needed"))
    if target not in header:
        add(Problem(target, "the target column is missing: add it or name another with --target"))

    by_schema: dict[str, list[Problem]] = {}
    extra: list[Problem] = []
    for name, column in columns:
        if name == target:
            _check_target(target, column, task, add)
        _check_generic(name, column, add, is_target=name == target)
        if schema is None:
            continue
        spec = schema.columns.get(name)
        if spec is not None:
            _check_column(name, column, spec, by_schema.setdefault(name, []).append)
        elif not schema.allow_extra_columns and name != target:
            extra.append(Problem(name, "not in the schema (allowExtraColumns is false): drop "
                                       "it or declare it"))  # fmt: skip
    if schema is not None:
        for name, spec in schema.columns.items():
            if name not in header and spec.required and name != target:
                add(Problem(name, "required by the schema but missing from the file"))
            report.problems.extend(by_schema.get(name, []))
        report.problems.extend(extra)
    return report


def _check_target(target: str, labels: pd.Series, task: Task, add: Any) -> None:
    missing = int(labels.isna().sum())
    if missing:
        add(Problem(target, f"{missing} rows have no label: drop or label them"))
    present = labels.dropna()
    if task == "regression":
        _check_regression_target(target, present, add)
        return
    counts = present.value_counts()
    if task == "binary" and len(counts) != 2:
        other = " (for more classes: --task multiclass)" if len(counts) > 2 else ""
        add(Problem(target, f"the target has {len(counts)} class(es); a binary model needs "
                            f"exactly 2{other}"))  # fmt: skip
        return
    if task == "multiclass" and not 3 <= len(counts) <= MAX_CLASSES:
        add(Problem(target, f"the target has {len(counts)} class(es); a multiclass model needs "
                            f"3 to {MAX_CLASSES} (2 classes: --task binary)"))  # fmt: skip
        return
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        seen = ", ".join(f"{label!r} in {n} row{'s' if n > 1 else ''}"
                         for label, n in rare.items())  # fmt: skip
        add(Problem(target, f"class {seen}: every class needs at least {MIN_CLASS_ROWS} rows "
                            "(one each for training, validation and the holdout); add rows, "
                            "merge the class into another or drop its rows"))  # fmt: skip


def _check_regression_target(target: str, present: pd.Series, add: Any) -> None:
    if pd.api.types.is_bool_dtype(present):
        add(Problem(target, "a regression target must be numbers, not true/false: --task binary"))
        return
    as_numbers = pd.to_numeric(present, errors="coerce")
    text = present[as_numbers.isna()]
    if len(text):
        sample = ", ".join(map(repr, text.astype(str).unique()[:_EXAMPLES]))
        rows = f"{len(text)} rows hold" if len(text) > 1 else "1 row holds"
        add(Problem(target, f"a regression target must be numbers; {rows} text "
                            f"(e.g. {sample}): clean them, or train classes with --task "
                            "multiclass"))  # fmt: skip
    elif as_numbers.nunique() < 2:
        add(Problem(target, "the target is constant: there is nothing to predict"))


def _check_generic(name: str, column: pd.Series, add: Any, is_target: bool) -> None:
    if not column.count():
        add(Problem(name, "the column is empty (every value is missing): drop it"))
        return
    numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    # min == max is one vectorised pass; counting distinct values hashes every row.
    constant = column.min() == column.max() if numeric else column.nunique() == 1
    if not is_target and constant:
        first = column.loc[column.first_valid_index()]
        add(Problem(name, f"the column is constant ({first!r}): it carries no signal, drop it"))
    if not numeric and not is_target:
        present = column.dropna()
        as_numbers = pd.to_numeric(present, errors="coerce")
        numbers, text = int(as_numbers.notna().sum()), int(as_numbers.isna().sum())
        if numbers and text and numbers >= len(present) * 0.05:
            sample = present[as_numbers.isna()].astype(str).unique()[:_EXAMPLES]
            add(
                Problem(
                    name,
                    f"mixed types: {numbers} numeric and {text} text values "
                    f"(e.g. {', '.join(map(repr, sample))}): clean the column to one type",
                )
            )


def _check_column(name: str, column: pd.Series, spec: ColumnSpec, add: Any) -> None:
    null_rate = float(column.isna().mean())
    if null_rate > spec.max_null_rate:
        add(
            Problem(
                name, f"{null_rate:.1%} missing values, at most {spec.max_null_rate:.1%} allowed"
            )
        )
    present = column.dropna()
    if spec.type in ("integer", "float", "boolean"):
        if not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            bad = present[pd.to_numeric(present, errors="coerce").isna()].astype(str).unique()
            add(
                Problem(
                    name,
                    f"expected {spec.type} values, found text "
                    f"(e.g. {', '.join(map(repr, bad[:_EXAMPLES]))})",
                )
            )
            return
        values = present.astype(float)
        if spec.type == "integer" and not np.all(np.mod(values.to_numpy(), 1) == 0):
            add(Problem(name, "expected whole numbers, found fractions"))
        if spec.type == "boolean" and not values.isin([0.0, 1.0]).all():
            add(Problem(name, "expected booleans (0/1, true/false)"))
        _check_range(name, values, spec, add)
    elif spec.allowed is not None:
        outside = present.astype(str)
        outside = outside[~outside.isin(spec.allowed)]
        if len(outside):
            sample = ", ".join(map(repr, outside.unique()[:_EXAMPLES]))
            add(
                Problem(
                    name,
                    f"{len(outside)} values outside the allowed categories (e.g. {sample}); "
                    f"allowed: {', '.join(spec.allowed)}",
                )
            )


def _check_range(name: str, values: pd.Series, spec: ColumnSpec, add: Any) -> None:
    for bound, outside, word in (
        (spec.min, values < (spec.min if spec.min is not None else 0), "below the minimum"),
        (spec.max, values > (spec.max if spec.max is not None else 0), "above the maximum"),
    ):
        if bound is None:
            continue
        count = int(outside.sum())
        if count:
            worst = values[outside].min() if word.startswith("below") else values[outside].max()
            add(Problem(name, f"{count} values {word} {bound:g} (worst {worst:g})"))
