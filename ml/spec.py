"""A model's own declaration (ml/models/NAME/model.yaml): framework, requirements, data schema."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from modelyard.contracts.tasks import Task
from modelyard.ml.errors import ModelyardMlError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

MODELS_DIR = Path(__file__).parent / "models"


class _Strict(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ColumnSpec(_Strict):
    type: Literal["integer", "float", "category", "boolean"]
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    max_null_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    required: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.allowed is not None and self.type != "category":
            raise ValueError("`allowed` applies to category columns only")
        return self


class DataSchema(_Strict):
    min_rows: int = Field(default=100, ge=1)
    allow_extra_columns: bool = True
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    framework: Literal["lightgbm"]
    task: Task = "binary"
    target: str = Field(min_length=1)
    requirements: list[str] = Field(default_factory=list)
    # None: no schema declared (a dataset's own model): only the checks every dataset gets.
    data_schema: DataSchema | None = Field(default=None, alias="schema")
    # This model's LightGBM parameters, over the environment's `training.params` (tuning still
    # searches the ones it tunes); checked against LightGBM's table like those.
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


def known_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """The models of the repository: each folder under ml/models with a model.yaml."""
    return sorted(p.parent.name for p in models_dir.glob("*/model.yaml"))


def model_file(name: str, models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / name / "model.yaml"


def load_model_spec(name: str, models_dir: Path = MODELS_DIR) -> ModelSpec:
    path = model_file(name, models_dir)
    if not path.is_file():
        known = known_models(models_dir)
        raise ModelyardMlError(
            f"{path}: no model named {name!r}. Known models: {', '.join(known) or 'none'}; "
            f"fix `modelyard:training.model` in the environment file or add {path}."
        )
    try:
        return ModelSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ModelyardMlError(f"{path}: not valid YAML ({exc}). Fix the syntax.") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ModelyardMlError(f"{path}: {problems}. Fix these keys.") from None
