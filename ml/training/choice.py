"""What `modelyard train` trains: a model under ml/models (its schema, target and task), or, for
a target no model there predicts, a model of its own whose task comes from `--task` or the data."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from modelyard.contracts.tasks import Task
from modelyard.ml.data.tasks import TaskChoice, infer_task
from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.spec import MODELS_DIR, ModelSpec, load_model_spec


def choose_model(
    default: str, data: Path, model: str | None, target: str | None,
    models_dir: Path = MODELS_DIR,
) -> ModelSpec:  # fmt: skip
    """The named model (or the environment's); a dataset's own model when `target` is not the
    target that model predicts. Raises with what to type instead."""
    name = model or default
    if (models_dir / name / "model.yaml").is_file():
        spec = load_model_spec(name, models_dir)
        if target is None or target == spec.target:
            return spec
        if model is not None:
            raise ModelyardMlError(
                f"model {name} predicts {spec.target!r}, not {target!r}: to train a model of "
                f"{target!r}, name it with --model NEW_NAME"
            )
        name = _name_of(data)
        if (models_dir / name / "model.yaml").is_file():
            raise ModelyardMlError(
                f"{data.name} would train a model named {name!r}, which ml/models/{name} "
                f"already defines with another target: name it with --model NEW_NAME"
            )
    elif target is None:
        known = sorted(p.parent.name for p in models_dir.glob("*/model.yaml"))
        raise ModelyardMlError(
            f"no model named {name!r} under ml/models (known: {', '.join(known)}): give "
            "--target COLUMN to train one on this dataset"
        )
    # A dataset nobody wrote a model.yaml for: no schema, the task decided from its target.
    return ModelSpec(name=name, framework="lightgbm", target=target)


def choose_task(
    spec: ModelSpec, frame: pd.DataFrame, option: Task | None, models_dir: Path = MODELS_DIR
) -> TaskChoice:
    """The model.yaml's task for its own model; else `--task`; else inferred from the target."""
    if (models_dir / spec.name / "model.yaml").is_file():
        if option is not None and option != spec.task:
            raise ModelyardMlError(
                f"ml/models/{spec.name}/model.yaml says task {spec.task}, not {option}: drop "
                "--task, or train another model with --model NEW_NAME --target COLUMN"
            )
        return TaskChoice(spec.task, "model", f"ml/models/{spec.name}/model.yaml")
    if option is not None:
        return TaskChoice(option, "option", "--task")
    if spec.target not in frame.columns:
        return TaskChoice("binary", "inferred", "no target column")  # validation names it
    return infer_task(frame[spec.target])


def _name_of(data: Path) -> str:
    """A registered model's name from the data file's: `Sales 2024.csv` -> `sales-2024`."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", data.stem).strip("-_").lower()
    return slug if slug[:1].isalpha() else f"model-{slug}".rstrip("-")
