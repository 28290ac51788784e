"""The reference profile of a model's training data, logged beside the model as
`reference/profile.json` of its run, and what live traffic is compared against.

Per numeric feature: decile bin edges with the share of rows in each bin, the missing rate and
a bounded random sample of values (for the KS test); per categorical feature: the share of
each category and the missing rate; the same for the predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from modelyard.contracts import artifacts
from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.monitoring.bins import bin_shares
from modelyard.ml.prediction_kind import PredictionKind

FORMAT = 1
SAMPLE_SIZE = 1000
BINS = 10


class ProfileError(ModelyardMlError):
    """A reference profile is missing or unreadable."""


def build_profile(
    features: pd.DataFrame, predictions: np.ndarray, kind: PredictionKind, seed: int = 0
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    profile: dict[str, Any] = {"format": FORMAT, "rows": len(features), "features": {}}
    for name in features.columns:
        column = features[name]
        if is_categorical(column):
            profile["features"][str(name)] = categorical_summary(column)
        else:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            profile["features"][str(name)] = numeric_summary(values, rng)
    # Binned as the server counts live predictions: a class, or the kind's edges.
    if kind.task == "multiclass":
        predicted = np.asarray(predictions).reshape(len(features), -1).argmax(axis=1)
        profile["prediction"] = categorical_summary(pd.Series(np.asarray(kind.classes)[predicted]))
    else:
        scores = np.asarray(predictions, dtype=float).ravel()
        profile["prediction"] = numeric_summary(scores, rng, edges=np.asarray(kind.edges))
    return profile


def is_categorical(column: pd.Series) -> bool:
    return bool(
        isinstance(column.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(column.dtype)
        or pd.api.types.is_string_dtype(column.dtype)
        or pd.api.types.is_bool_dtype(column.dtype)
    )


def categorical_summary(column: pd.Series) -> dict[str, Any]:
    total = len(column)
    missing = int(column.isna().sum())
    counts = column.dropna().astype(str).value_counts()
    return {
        "kind": "categorical",
        "missing": missing / total if total else 0.0,
        "frequencies": {str(k): int(v) / total for k, v in counts.items()},
    }


def numeric_summary(
    values: np.ndarray, rng: np.random.Generator, edges: np.ndarray | None = None
) -> dict[str, Any]:
    total = len(values)
    present = values[~np.isnan(values)]
    if edges is None:
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
            if present.size
            else np.array([])
        )
    sample = rng.choice(present, size=min(SAMPLE_SIZE, present.size), replace=False)
    return {
        "kind": "numeric",
        "missing": (total - present.size) / total if total else 0.0,
        "edges": [float(e) for e in edges],
        "shares": [float(s) for s in bin_shares(present, np.asarray(edges), total)],
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "sample": [float(v) for v in np.round(sample, 6)],
    }


def save_profile(profile: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile), encoding="utf-8")
    return path


def load_profile(source: str | Path) -> dict[str, Any]:
    """A profile from a file, or from a model version's run: `runs:/RUN_ID` or `models:/NAME/V`."""
    text = str(source)
    path = Path(_download(text)) if text.startswith(("runs:/", "models:/")) else Path(text)
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: cannot read the reference profile ({exc})") from None
    if (
        not isinstance(profile, dict)
        or profile.get("format") != FORMAT
        or "features" not in profile
    ):
        raise ProfileError(f"{path}: not a modelyard reference profile (format {FORMAT})")
    return profile


def _download(uri: str) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    run_id = uri[len("runs:/") :].strip("/").split("/")[0] if uri.startswith("runs:/") else ""
    if uri.startswith("models:/"):
        name, _, version = uri[len("models:/") :].strip("/").partition("/")
        run_id = MlflowClient().get_model_version(name, version).run_id or ""
    try:
        return str(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifacts.PROFILE)
        )
    except Exception as exc:
        raise ProfileError(
            f"run {run_id} has no {artifacts.PROFILE}: train with the kit's training step, which "
            f"logs the training data profile beside the model ({exc})"
        ) from None
