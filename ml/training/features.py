"""From a validated frame to LightGBM inputs: labels as 0/1, text columns as categories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PreparedData:
    features: pd.DataFrame  # text columns as pandas `category` (LightGBM's native categoricals)
    labels: np.ndarray  # 0/1
    classes: tuple[str, str]  # original labels of 0 and 1, for the record
    categorical: tuple[str, ...]


def prepare(frame: pd.DataFrame, target: str) -> PreparedData:
    raw = frame[target]
    values = sorted(raw.dropna().unique(), key=lambda v: (str(type(v)), v))
    # 0/1 and False/True keep their meaning; other labels: the later one in sort order is 1.
    positive = values[-1]
    labels = (raw == positive).to_numpy(dtype=np.int8)
    features = frame.drop(columns=[target])
    categorical = []
    for name in features.columns:
        column = features[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            categories = sorted(column.dropna().astype(str).unique())
            features[name] = pd.Categorical(column.astype("string"), categories=categories)
            categorical.append(str(name))
    return PreparedData(
        features=features,
        labels=labels,
        classes=(str(values[0]), str(positive)),
        categorical=tuple(categorical),
    )


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray


def stratified_split(labels: np.ndarray, valid: float, holdout: float, seed: int) -> Split:
    """Row indices for training, early-stopping validation and the gate's holdout, per class."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "holdout": []}
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_holdout = max(1, round(len(rows) * holdout))
        n_valid = max(1, round(len(rows) * valid))
        parts["holdout"].append(rows[:n_holdout])
        parts["valid"].append(rows[n_holdout : n_holdout + n_valid])
        parts["train"].append(rows[n_holdout + n_valid :])
    return Split(**{k: np.sort(np.concatenate(v)) for k, v in parts.items()})
