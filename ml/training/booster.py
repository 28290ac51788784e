"""One LightGBM fit that checkpoints as it goes and resumes from the last checkpoint.

Kill the process at any point and fit again with the same folder: finished boosting rounds are
loaded from the checkpoint, not redone, and early stopping remembers the rounds before the crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

MetricRows = list[tuple[int, str, float]]  # (iteration, metric name, value)


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
) -> FitResult:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    model_file = checkpoint_dir / "model.txt"
    history_file = checkpoint_dir / "history.json"
    final_file = checkpoint_dir / "final.txt"

    history = FitHistory(metric, higher_is_better)
    if final_file.is_file() and history_file.is_file():  # this fit finished before the crash
        history.scores = json.loads(history_file.read_text())["scores"]
        return FitResult(lgb.Booster(model_file=str(final_file)), history, len(history.scores))

    init_model: lgb.Booster | None = None
    if model_file.is_file() and history_file.is_file():
        init_model = lgb.Booster(model_file=str(model_file))
        history.scores = json.loads(history_file.read_text())["scores"][
            : init_model.current_iteration()
        ]
    done = len(history.scores)
    pending: MetricRows = []

    def record(env: lgb.callback.CallbackEnv) -> None:
        for _data, name, value, _higher in env.evaluation_result_list:
            pending.append((env.iteration + 1, name, float(value)))
            if name == metric:
                history.scores.append(float(value))
        rounds = env.iteration + 1
        if rounds % checkpoint_every == 0:
            _atomic_write(model_file, env.model.model_to_string())
            _atomic_write(history_file, json.dumps({"scores": history.scores}))
            if on_checkpoint:
                on_checkpoint(list(pending))
            pending.clear()
        if early_stopping_rounds and rounds - history.best_iteration >= early_stopping_rounds:
            raise lgb.callback.EarlyStopException(history.best_iteration - 1, [])

    record.order = 30  # type: ignore[attr-defined]
    remaining = num_boost_round - done
    if remaining > 0 and not _stopped_early(history, early_stopping_rounds):
        booster = lgb.train(
            {**params, "metric": sorted({metric, "binary_logloss", "auc"})},
            train,
            num_boost_round=remaining,
            valid_sets=[valid],
            valid_names=["valid"],
            init_model=init_model,
            keep_training_booster=True,
            callbacks=[record],
        )
    else:
        assert init_model is not None
        booster = init_model
    if on_checkpoint and pending:
        on_checkpoint(list(pending))
    best = lgb.Booster(model_str=booster.model_to_string(num_iteration=history.best_iteration))
    _atomic_write(history_file, json.dumps({"scores": history.scores}))
    _atomic_write(final_file, best.model_to_string())
    return FitResult(best, history, done)


def _stopped_early(history: FitHistory, early_stopping_rounds: int | None) -> bool:
    return bool(
        early_stopping_rounds
        and history.scores
        and len(history.scores) - history.best_iteration >= early_stopping_rounds
    )


def _atomic_write(path: Path, text: str) -> None:
    """A checkpoint is either the old one or the new one, never half of either."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
