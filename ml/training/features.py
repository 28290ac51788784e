"""From a validated frame to LightGBM inputs: labels as LightGBM's task takes them (0/1, class
codes 0..K-1, or values), text columns as categories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from modelyard.contracts.tasks import Task

REGRESSION_STRATA = 10  # a regression split keeps each decile of the target in every part


@dataclass(frozen=True)
class PreparedData:
    features: pd.DataFrame  # text columns as pandas `category` (LightGBM's native categoricals)
    labels: np.ndarray  # binary 0/1; multiclass 0..K-1; regression the values
    task: Task
    # Original labels of codes 0, 1, ... (binary and multiclass); () for regression.
    classes: tuple[str, ...]
    categorical: tuple[str, ...]


def prepare(frame: pd.DataFrame, target: str, task: Task = "binary") -> PreparedData:
    labels, classes = encode_labels(frame[target], task)
    features = frame.drop(columns=[target])
    return prepare_rows(features, labels, task, classes, text_categories(features))


def encode_labels(raw: pd.Series, task: Task) -> tuple[np.ndarray, tuple[str, ...]]:
    """The target as LightGBM's task takes it, and the original label of each class code."""
    if task == "regression":
        return pd.to_numeric(raw).to_numpy(dtype=np.float64), ()
    # 0/1 and False/True keep their meaning; other labels are coded in sort order (for a binary
    # model the later one is class 1).
    values = sorted(raw.dropna().unique(), key=lambda v: (str(type(v)), v))
    codes = {value: code for code, value in enumerate(values)}
    labels = raw.map(codes).to_numpy(dtype=np.int8 if task == "binary" else np.int32)
    return labels, tuple(str(v) for v in values)


def is_text(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def category_names(column: pd.Series) -> list[str]:
    """A text column's categories: every value it holds, in sort order."""
    return sorted(column.dropna().astype(str).unique())


def text_categories(features: pd.DataFrame) -> dict[str, list[str]]:
    return {str(name): category_names(features[name]) for name in features.columns
            if is_text(features[name])}  # fmt: skip


def prepare_rows(
    features: pd.DataFrame,
    labels: np.ndarray,
    task: Task,
    classes: tuple[str, ...],
    categories: dict[str, list[str]],
) -> PreparedData:
    """Rows of a dataset as LightGBM takes them; `labels`, `classes` and the text columns'
    `categories` are the whole dataset's, so that every part of it codes them alike."""
    features = features.copy(deep=False)
    for name, names in categories.items():
        features[name] = pd.Categorical(features[name].astype("string"), categories=names)
    return PreparedData(features, labels, task, classes, tuple(categories))


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray


def strata(labels: np.ndarray, task: Task) -> np.ndarray:
    """What a split keeps in proportion: the class, or a regression target's decile."""
    if task != "regression":
        return labels
    ranks = np.argsort(np.argsort(labels, kind="stable"), kind="stable")
    return (ranks * REGRESSION_STRATA // max(len(ranks), 1)).astype(np.int32)


def stratified_split(labels: np.ndarray, valid: float, holdout: float, seed: int) -> Split:
    """Row indices for training, early-stopping validation and the gate's holdout, per stratum
    (`strata`): every class is in every part."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "holdout": []}
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_holdout = max(1, round(len(rows) * holdout))
        n_valid = max(1, round(len(rows) * valid))
        parts["holdout"].append(rows[:n_holdout])
        parts["valid"].append(rows[n_holdout : n_holdout + n_valid])
        parts["train"].append(rows[n_holdout + n_valid :])
    return Split(**{k: np.sort(np.concatenate(v)) for k, v in parts.items()})
