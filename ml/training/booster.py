"""One LightGBM fit that checkpoints as it goes and resumes from the last checkpoint.

Kill the process at any point and fit again with the same folder: finished boosting rounds are
loaded from the checkpoint, not redone, and early stopping remembers the rounds before the crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from modelyard.contracts.atomic_file import write_atomic

# (round, metric name, value, time in ms). The time is taken once, when the round ends: handing
# the same row over again after a crash repeats it exactly, and MLflow stores it once.
MetricRows = list[tuple[int, str, float, int]]
FINAL_MODEL = "final.txt"  # in the checkpoint folder: the fit's model, trimmed to its best round
# What LightGBM reports each round beside the metric early stopping tracks, by objective.
REPORTED = {
    "binary": ("binary_logloss", "auc"),
    "multiclass": ("multi_logloss", "multi_error"),
    "regression": ("l2", "l1"),
}


@dataclass
class FitHistory:
    """Validation metric per round, and where early stopping stands."""

    metric: str
    higher_is_better: bool
    scores: list[float] = field(default_factory=list)

    @property
    def best_iteration(self) -> int:  # 1-based number of rounds of the best model
        if not self.scores:
            return 0
        pick = np.argmax if self.higher_is_better else np.argmin
        return int(pick(self.scores)) + 1

    @property
    def best_score(self) -> float:
        return self.scores[self.best_iteration - 1]


@dataclass
class FitResult:
    booster: lgb.Booster  # trimmed to the best round
    history: FitHistory
    resumed_from: int  # rounds loaded from a checkpoint (0 for a fresh fit)


def fit(
    params: dict[str, Any],
    train: lgb.Dataset,
    valid: lgb.Dataset,
    num_boost_round: int,
    early_stopping_rounds: int | None,
    metric: str,
    higher_is_better: bool,
    checkpoint_dir: Path,
    checkpoint_every: int,
    on_checkpoint: Callable[[MetricRows], None] | None = None,
    writes: bool = True,
    on_round: Callable[[], None] | None = None,
) -> FitResult:
    """`writes` False: a follower of a fit over several workers (ml/training/distributed.py). It
    starts from the leader's checkpoint, as the leader does, and leaves the folder to it.
    `on_round` is called after every boosting round (the stall watch of such a fit)."""
    if writes:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    model_file = checkpoint_dir / "model.txt"
    history_file = checkpoint_dir / "history.json"
    final_file = checkpoint_dir / FINAL_MODEL

    history = FitHistory(metric, higher_is_better)
    init_model: lgb.Booster | None = None
    rows: MetricRows = []  # every validation metric of every round so far
    finished = final_file.is_file()  # the fit ended before the crash; only hand-over was left
    if history_file.is_file() and (finished or model_file.is_file()):
        saved = json.loads(history_file.read_text())
        if not finished:
            init_model = lgb.Booster(model_file=str(model_file))
        kept = len(saved["scores"]) if finished else init_model.current_iteration()  # type: ignore[union-attr]
        history.scores = saved["scores"][:kept]
        rows = [(int(i), str(n), float(v), int(t)) for i, n, v, t in saved["rows"] if i <= kept]
    done = len(history.scores)
    handed_over = 0  # rows the caller has been given by this process

    def save_history() -> None:
        if writes:
            write_atomic(history_file, json.dumps({"scores": history.scores, "rows": rows}))

    def save_model(path: Path, booster: lgb.Booster | lgb.CVBooster) -> None:
        if writes:
            write_atomic(path, booster.model_to_string())

    def hand_over() -> None:
        """Give the caller the saved rows it has not been given. After a crash that is
        every saved row again: the caller may not have stored them before the crash, and a
        repeated row is identical to the first (MLflow stores it once)."""
        nonlocal handed_over
        if on_checkpoint and len(rows) > handed_over:
            on_checkpoint(rows[handed_over:])
        handed_over = len(rows)

    hand_over()
    if finished:
        return FitResult(lgb.Booster(model_file=str(final_file)), history, done)

    def record(env: lgb.callback.CallbackEnv) -> None:
        if on_round:
            on_round()
        now = int(time.time() * 1000)
        for result in env.evaluation_result_list or []:
            name, value = result[1], float(result[2])
            rows.append((env.iteration + 1, name, value, now))
            if name == metric:
                history.scores.append(value)
        rounds = env.iteration + 1
        if rounds % checkpoint_every == 0:
            # History before model: a crash between the two leaves history ahead of the model,
            # which resuming trims to the model's rounds (the other way round, rounds would be
            # numbered from a history that is behind). Metrics are handed over only for rounds
            # that survive a crash.
            save_history()
            save_model(model_file, env.model)
            hand_over()
        if early_stopping_rounds and rounds - history.best_iteration >= early_stopping_rounds:
            raise lgb.callback.EarlyStopException(history.best_iteration - 1, [])

    record.order = 30  # type: ignore[attr-defined]
    remaining = num_boost_round - done
    if remaining > 0 and not _stopped_early(history, early_stopping_rounds):
        booster = lgb.train(
            {**params, "metric": sorted({metric, *REPORTED[params.get("objective", "binary")]})},
            train,
            num_boost_round=remaining,
            valid_sets=[valid],
            valid_names=["valid"],
            init_model=init_model,
            keep_training_booster=True,
            callbacks=[record],
        )
        if params.get("num_machines", 1) > 1:
            booster.free_network()  # the next fit sets it up again, on its own port
    else:
        assert init_model is not None
        booster = init_model
    best = lgb.Booster(model_str=booster.model_to_string(num_iteration=history.best_iteration))
    save_history()
    save_model(final_file, best)
    hand_over()
    return FitResult(best, history, done)


def _stopped_early(history: FitHistory, early_stopping_rounds: int | None) -> bool:
    return bool(
        early_stopping_rounds
        and history.scores
        and len(history.scores) - history.best_iteration >= early_stopping_rounds
    )
