"""The gate loop: train with the environment's parameters; while the holdout metric misses the
gate, search hyperparameters (Optuna) and retrain, until it passes or the budget runs out.

Every trial is a nested MLflow run. The Optuna study lives in a journal file next to the
checkpoints, so after a crash finished trials are not redone and the interrupted one resumes
from its last boosting checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
from modelyard.contracts.environment.base import MetricRule
from modelyard.contracts.environment.training import TrainingSettings
from modelyard.contracts.tasks import Task
from modelyard.ml.training.booster import FINAL_MODEL, FitResult, MetricRows, fit
from modelyard.ml.training.distributed import Network, PostedFit, StallWatch
from modelyard.ml.training.evaluation import task_metrics
from modelyard.ml.training.features import PreparedData, Split
from optuna.storages.journal import JournalFileBackend

STUDY = "gate-loop"
# Per task, the LightGBM validation metric that tracks a gate metric during boosting; any other
# gate metric is tracked by the task's loss (the first entry).
EARLY_STOPPING_METRIC: dict[Task, dict[str, str]] = {
    "binary": {"": "binary_logloss", "roc_auc": "auc", "pr_auc": "average_precision"},
    "multiclass": {"": "multi_logloss", "accuracy": "multi_error"},
    "regression": {"": "l2", "rmse": "rmse", "mae": "l1"},
}
_HIGHER_IS_BETTER = {"auc", "average_precision"}  # of those LightGBM metrics


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    params: dict[str, Any]
    metrics: dict[str, float]
    rounds: int
    passed: bool
    checkpoint_dir: Path
    resumed_from: int


@dataclass(frozen=True)
class GateLoopResult:
    best: TrialOutcome
    trials: list[TrialOutcome]
    passed: bool
    rule: MetricRule
    stopped_by: str  # "gate passed" | "trial budget" | "time budget"
    # The best trial's holdout predictions when this process trained it (None after a resume):
    # predicting a large holdout again costs seconds.
    holdout_scores: np.ndarray | None = None

    @property
    def value(self) -> float:
        return self.best.metrics[self.rule.metric]

    @property
    def gap(self) -> float:
        return self.rule.gap(self.value)

    @property
    def model_file(self) -> Path:
        return self.best.checkpoint_dir / FINAL_MODEL

    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_file=str(self.model_file))


class TrialHooks:
    """What the loop tells the outside world: MLflow nested runs, progress on the terminal."""

    def trial_started(self, number: int, params: dict[str, Any], resumed: bool) -> None: ...
    def metrics_checkpointed(self, number: int, rows: MetricRows) -> None: ...
    def model_trained(self, number: int, model_file: Path, booster: lgb.Booster) -> None: ...
    # Once this returns, the study records the trial as done and a resumed job never runs it
    # again: what the hooks keep of it must be stored by then.
    def trial_finished(self, outcome: TrialOutcome) -> None: ...


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def run_gate_loop(
    data: PreparedData,
    split: Split,
    settings: TrainingSettings,
    rule: MetricRule,
    workdir: Path,
    hooks: TrialHooks,
    spent_seconds: float = 0.0,
    on_time_spent: Callable[[float], None] | None = None,
    network: Network | None = None,
) -> GateLoopResult:
    """`rule`: the environment's gate for the data's task (TrainingSettings.gate_for).
    `network`: this process leads a fit over several workers (ml/training/distributed.py)."""
    storage = optuna.storages.JournalStorage(
        JournalFileBackend(str(workdir / "optuna-journal.log"))
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A resumed study must draw new candidates, not replay the ones the first process drew.
    done = sum(s.n_trials for s in optuna.get_all_study_summaries(storage) if s.study_name == STUDY)
    study = optuna.create_study(
        study_name=STUDY,
        storage=storage,
        load_if_exists=True,
        direction="maximize" if rule.higher_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed + done, n_startup_trials=3),
    )
    _requeue_interrupted(study)
    if not study.trials:
        study.enqueue_trial({}, user_attrs={"baseline": True})  # the environment's own params

    budget_seconds = settings.budget.minutes * 60
    started = time.monotonic()
    scores_by_trial: dict[int, np.ndarray] = {}

    def elapsed() -> float:
        return spent_seconds + time.monotonic() - started

    def objective(trial: optuna.Trial) -> float:
        baseline = bool(trial.user_attrs.get("baseline"))
        tuned = {} if baseline else search_space(trial)
        params = {**_base_params(settings, data), **settings.params, **tuned}
        checkpoint_dir = workdir / f"fit-{_params_key(params)}"
        resumed = (checkpoint_dir / "model.txt").is_file()
        hooks.trial_started(trial.number, params, resumed)
        result = _fit(data, split, settings, rule, params, checkpoint_dir,
                      lambda rows: hooks.metrics_checkpointed(trial.number, rows), network)  # fmt: skip
        hooks.model_trained(trial.number, checkpoint_dir / FINAL_MODEL, result.booster)
        scores = np.asarray(result.booster.predict(data.features.iloc[split.holdout]))
        scores_by_trial[trial.number] = scores
        metrics = task_metrics(data.task, data.labels[split.holdout], scores)
        outcome = TrialOutcome(
            number=trial.number,
            params=params,
            metrics=metrics,
            rounds=result.booster.current_iteration(),
            passed=rule.passes(metrics[rule.metric]),
            checkpoint_dir=checkpoint_dir,
            resumed_from=result.resumed_from,
        )
        trial.set_user_attr("outcome", _outcome_attrs(outcome))
        hooks.trial_finished(outcome)
        if on_time_spent:
            on_time_spent(elapsed())
        if outcome.passed:
            trial.study.stop()
        return metrics[rule.metric]

    stopped_by = _stop_reason(study, rule, settings, elapsed())
    while stopped_by is None:
        remaining = max(1.0, budget_seconds - elapsed())
        study.optimize(objective, n_trials=1, timeout=remaining, catch=())
        stopped_by = _stop_reason(study, rule, settings, elapsed())

    outcomes = [
        _outcome_from(t) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
    ]
    pick = max if rule.higher_is_better else min
    best = pick(outcomes, key=lambda o: o.metrics[rule.metric])
    return GateLoopResult(
        best, outcomes, best.passed, rule, stopped_by, scores_by_trial.get(best.number)
    )


def _stop_reason(
    study: optuna.Study, rule: MetricRule, settings: TrainingSettings, elapsed: float
) -> str | None:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if any(_outcome_from(t).passed for t in complete):
        return "gate passed"
    if len(complete) >= settings.budget.trials:
        return "trial budget"
    if complete and elapsed >= settings.budget.minutes * 60:
        return "time budget"
    return None


def _requeue_interrupted(study: optuna.Study) -> None:
    """A trial a crash interrupted (left RUNNING by a killed process, or FAIL by an error such as
    a training network losing a worker) is queued again, once, with the same params: its
    checkpoint folder is keyed by those params, so it resumes where it stopped."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    requeued = {t.user_attrs.get("resumes") for t in study.get_trials(deepcopy=False)}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if trial.number not in requeued:
            study.enqueue_trial(trial.params,
                                user_attrs={**trial.user_attrs, "resumes": trial.number})  # fmt: skip


def join_fits(
    data: PreparedData,
    split: Split,
    settings: TrainingSettings,
    rule: MetricRule,
    network: Network,
    say: Callable[[str], None],
) -> None:
    """A follower's part of the gate loop: each fit the leader posts, on this worker's rows."""
    network.check_in()
    for posted in network.fits(say):
        _fit(data, split, settings, rule, posted.params, posted.checkpoint_dir, None, network,
             posted)  # fmt: skip


def _fit(
    data: PreparedData,
    split: Split,
    settings: TrainingSettings,
    rule: MetricRule,
    params: dict[str, Any],
    checkpoint_dir: Path,
    on_checkpoint: Callable[[MetricRows], None] | None,
    network: Network | None = None,
    posted: PostedFit | None = None,
) -> FitResult:
    """One fit; over `network` the leader posts it (`posted` None), a follower joins `posted`.
    `split.train` is this process's share of the training rows (ml/training/training_data.py)."""
    if network is not None:
        posted = posted or network.post(params, checkpoint_dir)
        params = {**params, **network.lightgbm_params(posted)}

    # LightGBM frees its copy of the rows once it has binned them, four bytes a value against the
    # bins' one. A fit going on from a checkpoint scores them first: lgb.train builds the Dataset.
    def dataset(rows: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            data.features.iloc[rows],
            label=data.labels[rows],
            reference=reference,
            params={"feature_pre_filter": False, "verbose": -1},
        )

    train = dataset(split.train)
    tracking = EARLY_STOPPING_METRIC[data.task]
    metric = tracking.get(rule.metric, tracking[""])
    with StallWatch.over(network, settings.kubernetes.stall_timeout_seconds) as watch:
        return fit(
            params,
            train,
            dataset(split.valid, reference=train),
            num_boost_round=settings.num_boost_round,
            early_stopping_rounds=settings.early_stopping_rounds,
            metric=metric,
            higher_is_better=metric in _HIGHER_IS_BETTER,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=settings.checkpoint_every,
            on_checkpoint=on_checkpoint,
            writes=network is None or network.leads,
            on_round=watch.round if watch else None,
        )


def _base_params(settings: TrainingSettings, data: PreparedData) -> dict[str, Any]:
    # LightGBM's objectives are named as the tasks are.
    task: dict[str, Any] = {"objective": data.task}
    if data.task == "multiclass":
        task["num_class"] = len(data.classes)
    return {**task, "verbose": -1, "seed": settings.seed, "deterministic": True}


def _params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _outcome_attrs(outcome: TrialOutcome) -> dict[str, Any]:
    return {
        "params": outcome.params,
        "metrics": outcome.metrics,
        "rounds": outcome.rounds,
        "passed": outcome.passed,
        "checkpoint_dir": str(outcome.checkpoint_dir),
        "resumed_from": outcome.resumed_from,
    }


def _outcome_from(trial: optuna.trial.FrozenTrial) -> TrialOutcome:
    attrs = trial.user_attrs["outcome"]
    return TrialOutcome(
        number=trial.number,
        params=attrs["params"],
        metrics=attrs["metrics"],
        rounds=attrs["rounds"],
        passed=attrs["passed"],
        checkpoint_dir=Path(attrs["checkpoint_dir"]),
        resumed_from=attrs["resumed_from"],
    )
