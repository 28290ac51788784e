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
    raw = frame[target]
    if task == "regression":
        labels = pd.to_numeric(raw).to_numpy(dtype=np.float64)
        classes: tuple[str, ...] = ()
    else:
        # 0/1 and False/True keep their meaning; other labels are coded in sort order (for a
        # binary model the later one is class 1).
        values = sorted(raw.dropna().unique(), key=lambda v: (str(type(v)), v))
        codes = {value: code for code, value in enumerate(values)}
        labels = raw.map(codes).to_numpy(dtype=np.int8 if task == "binary" else np.int32)
        classes = tuple(str(v) for v in values)
    features = frame.drop(columns=[target])
    categorical = []
    for name in features.columns:
        column = features[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            categories = sorted(column.dropna().astype(str).unique())
            features[name] = pd.Categorical(column.astype("string"), categories=categories)
            categorical.append(str(name))
    return PreparedData(features, labels, task, classes, tuple(categorical))


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray


def strata(data: PreparedData) -> np.ndarray:
    """What a split keeps in proportion: the class, or a regression target's decile."""
    if data.task != "regression":
        return data.labels
    ranks = np.argsort(np.argsort(data.labels, kind="stable"), kind="stable")
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
