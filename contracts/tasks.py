"""The kinds of model the kit trains, and the holdout metrics each has: one catalogue for the
environment files' gates, training, promotion and serving."""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = get_args(Task)

# Per task: each holdout metric training records, and whether a higher value is better.
METRICS: dict[Task, dict[str, bool]] = {
    "binary": {
        "roc_auc": True,
        "pr_auc": True,
        "accuracy": True,
        "f1": True,
        "precision": True,
        "recall": True,
        "log_loss": False,
    },
    "multiclass": {
        "accuracy": True,
        "balanced_accuracy": True,
        "macro_f1": True,
        "log_loss": False,
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}


def rule_problem(task: Task, metric: str, higher_is_better: bool) -> str | None:
    """Why a gate on `metric` pointing this way cannot judge a `task` model, or None."""
    known = METRICS[task]
    if metric not in known:
        return f"{task} models have no metric {metric!r}; they have {', '.join(known)}"
    if known[metric] != higher_is_better:
        better = "higher" if known[metric] else "lower"
        return f"{better} is better for {metric}: write it with {'>=' if known[metric] else '<='}"
    return None
