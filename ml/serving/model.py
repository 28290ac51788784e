"""A loaded model version: the booster, its signature's columns and how to turn values into them."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import yaml
from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.prediction_kind import METADATA_KEY, PredictionKind
from modelyard.ml.serving.predictor import FastPredictor

if TYPE_CHECKING:
    from modelyard.ml.serving.compiled import CompiledPredictor

NUMERIC_TYPES = {"double", "float", "long", "integer", "boolean"}


class ModelLoadError(ModelyardMlError):
    """The model folder is not an MLflow LightGBM model this server can serve."""


@dataclass(frozen=True)
class Column:
    name: str
    categorical: bool
    required: bool
    # category -> code as LightGBM saw it in training (pandas `category` codes)
    codes: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadedModel:
    name: str
    version: str
    run_id: str | None
    path: Path
    digest: str
    booster: lgb.Booster
    data_file: Path  # the booster's model file (what ml/serving/compiled compiles)
    columns: list[Column]
    index: dict[str, int]
    numeric_idx: np.ndarray
    categorical_idx: list[int]
    # decoded category lists, for turning codes back into strings (live samples)
    categories: dict[str, list[str]]
    prediction: PredictionKind = field(default_factory=PredictionKind)  # its task's predictions

    @cached_property
    def summary_columns(self) -> list[tuple[str, bool]]:
        return [(c.name, not c.categorical) for c in self.columns]

    @property
    def n_features(self) -> int:
        return len(self.columns)

    # What scores: LightGBM's own (one thread per worker: on small requests OpenMP's fan-out
    # costs more than it saves), until the worker swaps in the compiled model (ml/serving/compiled).
    predictor: FastPredictor | CompiledPredictor = field(init=False)

    def __post_init__(self) -> None:
        self.predictor = FastPredictor(self.booster, num_threads=1)

    @cached_property
    def kinds(self) -> list[dict[str, float] | None]:
        """Per column: its category codes, or None for a numeric column (small-batch parsing)."""
        return [c.codes if c.categorical else None for c in self.columns]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.predictor.predict(matrix)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "digest": self.digest,
            "features": [c.name for c in self.columns],
            "prediction": self.prediction.to_metadata(),
            "predictor": self.predictor.kind,
        }


IDENTITY_FILE = "modelyard-model.json"


def local_identity(path: Path) -> dict[str, str]:
    """Name, version and run of a model folder: from modelyard-model.json when the packaging step
    wrote one (registry name and version), else the folder name and the MLmodel's uuid."""
    identity = {"name": path.name, "version": "local", "run_id": ""}
    try:
        mlmodel = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")) or {}
        identity["version"] = str(mlmodel.get("model_uuid") or "local")[:12]
        identity["run_id"] = str(mlmodel.get("run_id") or "")
    except (OSError, yaml.YAMLError):
        pass
    try:
        written = json.loads((path / IDENTITY_FILE).read_text(encoding="utf-8"))
        identity.update({k: str(v) for k, v in written.items() if k in identity and v})
    except (OSError, ValueError):
        pass
    return identity


def load_model(
    path: Path, name: str = "", version: str = "", run_id: str | None = None
) -> LoadedModel:
    """Read an MLflow model folder (native LightGBM flavor) without going through pyfunc."""
    mlmodel_path = path / "MLmodel"
    if not mlmodel_path.is_file():
        raise ModelLoadError(f"{path}: no MLmodel file; not an MLflow model folder")
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{mlmodel_path}: not valid YAML ({exc})") from None
    flavor = (mlmodel.get("flavors") or {}).get("lightgbm")
    if not flavor:
        raise ModelLoadError(f"{mlmodel_path}: no `lightgbm` flavor; log it with mlflow.lightgbm")
    if flavor.get("model_class", "lightgbm.basic.Booster") != "lightgbm.basic.Booster":
        raise ModelLoadError(
            f"{mlmodel_path}: model_class {flavor.get('model_class')} is a pickled wrapper; "
            "log the native Booster (mlflow.lightgbm.log_model(booster, ...))"
        )
    data = path / str(flavor.get("data", "model.lgb"))
    try:
        booster = lgb.Booster(model_file=str(data))
    except (lgb.basic.LightGBMError, OSError) as exc:
        raise ModelLoadError(f"{data}: LightGBM cannot read it ({exc})") from None
    digest = "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    columns = _columns(mlmodel, mlmodel_path, booster)
    categorical_idx = [i for i, c in enumerate(columns) if c.categorical]
    identity = local_identity(path) if not (name and version) else {}
    return LoadedModel(
        name=name or identity["name"],
        version=version or identity["version"],
        run_id=run_id or identity.get("run_id") or None,
        path=path,
        digest=digest,
        booster=booster,
        data_file=data,
        columns=columns,
        index={c.name: i for i, c in enumerate(columns)},
        numeric_idx=np.array(
            [i for i, c in enumerate(columns) if not c.categorical], dtype=np.intp
        ),
        categorical_idx=categorical_idx,
        categories={c.name: list(c.codes) for c in columns if c.categorical},
        prediction=_prediction_kind(mlmodel, data, booster),
    )


def _prediction_kind(
    mlmodel: dict[str, object], data: Path, booster: lgb.Booster
) -> PredictionKind:
    """From the kit's metadata in MLmodel; a model logged without it by its booster's objective."""
    metadata = mlmodel.get("metadata")
    found = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    with data.open("rb") as handle:
        head = handle.read(4096)  # the model file's header names its objective
    return PredictionKind.from_metadata(found) or PredictionKind.of_booster_file(
        head, booster.num_model_per_iteration()
    )


def _columns(mlmodel: dict[str, object], where: Path, booster: lgb.Booster) -> list[Column]:
    signature = mlmodel.get("signature") or {}
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    if not raw:
        raise ModelLoadError(
            f"{where}: the model has no input signature; log it with signature=..."
        )
    try:
        inputs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{where}: unreadable signature ({exc})") from None
    if not all(isinstance(i, dict) and i.get("name") for i in inputs):
        raise ModelLoadError(f"{where}: the signature must be column-based (named columns)")
    pandas_categorical = list(booster.pandas_categorical or [])
    string_cols = [i for i in inputs if i.get("type") not in NUMERIC_TYPES]
    if len(string_cols) != len(pandas_categorical):
        raise ModelLoadError(
            f"{where}: the signature has {len(string_cols)} string column(s) but the booster knows "
            f"{len(pandas_categorical)} categorical one(s); train string columns as `category`"
        )
    # pandas_categorical lists the categories of the category columns, in column order.
    lists = iter(pandas_categorical)
    columns = []
    for item in inputs:
        categorical = item.get("type") not in NUMERIC_TYPES
        codes: dict[str, float] = {}
        if categorical:
            codes = {str(v): float(code) for code, v in enumerate(next(lists))}
        columns.append(
            Column(str(item["name"]), categorical, bool(item.get("required", True)), codes)
        )
    if len(columns) != booster.num_feature():
        raise ModelLoadError(
            f"{where}: the signature has {len(columns)} columns but the booster was trained on "
            f"{booster.num_feature()} features"
        )
    return columns


def decode_row(model: LoadedModel, row: np.ndarray) -> dict[str, object]:
    """One matrix row back to feature values (category strings, None for missing)."""
    out: dict[str, object] = {}
    for i, column in enumerate(model.columns):
        value = float(row[i])
        if math.isnan(value):
            out[column.name] = None
        elif column.categorical:
            names = model.categories[column.name]
            code = int(value)
            out[column.name] = names[code] if 0 <= code < len(names) else None
        else:
            out[column.name] = value
    return out
