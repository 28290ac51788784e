"""Which kind of model a target column asks for, when nobody said: `modelyard train --target`
on a dataset the kit has no model.yaml for."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from modelyard.contracts.tasks import Task

# An integer target with at most this many distinct values (and few of them per row) is a set
# of classes, not a quantity: star ratings, grades, tiers.
MAX_INTEGER_CLASSES = 20


@dataclass(frozen=True)
class TaskChoice:
    task: Task
    source: str  # "model" (its model.yaml), "option" (--task) or "inferred"
    reason: str


def infer_task(target: pd.Series) -> TaskChoice:
    """Text or booleans: classes (two: binary). Numbers: a quantity (regression), unless they
    are a few whole numbers, which are classes."""
    present = target.dropna()
    distinct = present.nunique()
    name = f"`{target.name}`"
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if not numeric:
        kind = "boolean" if pd.api.types.is_bool_dtype(present) else "text"
        task: Task = "binary" if distinct <= 2 else "multiclass"
        return TaskChoice(task, "inferred", f"{distinct} {kind} labels in {name}")
    whole = bool((present == present.round()).all())
    if whole and distinct <= MAX_INTEGER_CLASSES and distinct <= max(2, len(present) // 20):
        task = "binary" if distinct <= 2 else "multiclass"
        return TaskChoice(task, "inferred", f"{distinct} whole-number classes in {name}")
    return TaskChoice("regression", "inferred", f"{distinct} distinct numeric values in {name}")
