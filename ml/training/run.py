"""`modelyard train`: validate, run the gate loop under one MLflow run, log, register.

This process reads the data, boosts and scores; a sidecar process (ml/training/sidecar.py) does
the tracking and the plots, so their imports and round trips overlap the boosting. The job's
state (the MLflow runs it writes to, Optuna's journal, boosting checkpoints) lives in a folder
keyed by what is trained (environment, training settings, dataset digest), so running the same
command after a crash picks the same job up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from modelyard.contracts import tags
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.environment import Environment
from modelyard.contracts.environment.lightgbm_params import check_training_params
from modelyard.contracts.environment.training import TrainingSettings
from modelyard.contracts.state import training_dir
from modelyard.ml.errors import GateNotMet
from modelyard.ml.lineage import git_commit, pipeline_reason, pipeline_run_id
from modelyard.ml.monitoring.training_profile import build_profile
from modelyard.ml.prediction_kind import PredictionKind
from modelyard.ml.spec import ModelSpec, model_file
from modelyard.ml.training import mlflow_job, training_data
from modelyard.ml.training.booster import MetricRows
from modelyard.ml.training.distributed import Network
from modelyard.ml.training.features import PreparedData
from modelyard.ml.training.plots import load_matplotlib
from modelyard.ml.training.sidecar import Sidecar
from modelyard.ml.training.training_data import TrainingData
from modelyard.ml.training.tuning import (
    GateLoopResult,
    TrialHooks,
    TrialOutcome,
    join_fits,
    run_gate_loop,
)

Say = Callable[[str], None]
PROFILE_ROWS = 20_000  # 2,000 rows per decile: stable bins, cheap on a million-row dataset
SIGNATURE_ROWS = 200


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    model_version: int | None
    metrics: dict[str, float]
    gate: dict[str, Any]
    dataset_digest: str
    trials: int
    stopped_by: str
    resumes: int
    task: str = "binary"
    classes: tuple[str, ...] = ()  # classification: the labels, in the order of the outputs

    def to_json(self) -> dict[str, Any]:
        keys = ("run_id", "model_name", "model_version", "task", "metrics", "gate",
                "dataset_digest")  # fmt: skip
        data = asdict(self)
        return {**{k: data[k] for k in keys}, "classes": list(self.classes),
                "trials": self.trials, "stopped_by": self.stopped_by,
                "resumes": self.resumes}  # fmt: skip


def training_settings(environment: Environment, spec: ModelSpec) -> TrainingSettings:
    """The environment's training settings, the model's own LightGBM params over its params."""
    if not spec.params:
        return environment.training
    merged = {**environment.training.params, **spec.params}
    return environment.training.model_copy(update={"params": merged})


def job_key(environment: Environment, spec: ModelSpec, digest: str, target: str) -> str:
    settings = training_settings(environment, spec)
    what: dict[str, Any] = {
        "environment": environment.name,
        "model": spec.name,
        "target": target,
        "task": spec.task,
        # Where it runs is not what is trained: a Job resumes what a process began.
        "training": settings.model_dump(mode="json", exclude={"kubernetes"}),
        "dataset": digest,
    }
    if settings.kubernetes.workers > 1:  # several workers train another model than one does
        what["workers"] = settings.kubernetes.workers
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def train(
    environment: Environment,
    spec: ModelSpec,
    held: TrainingData,
    target: str,
    state_root: Path,
    project_root: Path,
    sidecar: Sidecar,
    say: Say = lambda _: None,
    register: bool = True,
    network: Network | None = None,
) -> TrainResult:
    """Run the gate loop on validated data (`read_training_data`), log the best model; register
    it unless `register` is False (the pipeline registers in its own stage, after evaluation).
    `sidecar`: the job's, from `mlflow_job.tracking_sidecar`, entered by the caller before it
    reads the data. `network`: this process leads a training over several workers
    (`join_training` runs on the others)."""
    # Callers check sooner; this is for every other one.
    check_training_params(environment, (model_file(spec.name), spec.params))
    rule = environment.training_gate(spec.task)
    settings = training_settings(environment, spec)
    data, split, kind = held.data, held.split, held.kind
    assert held.report is not None and held.record is not None, "a follower's share: join_training"

    workdir = training_dir(state_root) / job_key(environment, spec, held.digest, target)
    state = _JobState.begin(workdir)
    if state.resumes:
        parent = mlflow_job.parent_run_of(workdir)
        where = f"run {parent}" if parent else "the job (the crash came before its MLflow run)"
        say(f"resuming {where} (resume #{state.resumes})")
    lineage = tags.Lineage(
        environment=environment.name,
        git_commit=git_commit(project_root),
        pipeline_run_id=pipeline_run_id(),
        reason=pipeline_reason(),
        dataset_digest=held.digest,
        dataset_path=held.source or str(held.path),
    ).to_tags()
    sidecar.send(mlflow_job.open_job, str(workdir), state.job_id, environment.mlflow.experiment,
                 f"train-{spec.name}", lineage, held.record,
                 held.report.to_dict(), state.resumes, kind.to_metadata())  # fmt: skip

    sample = data.features.iloc[split.holdout[:SIGNATURE_ROWS]]
    hooks = _SidecarHooks(sidecar, sample, rule.metric, say)
    loop = run_gate_loop(
        data, split, settings, rule, workdir, hooks,
        spent_seconds=state.spent_seconds, on_time_spent=state.record_time, network=network,
    )  # fmt: skip
    best = loop.best
    sidecar.send(mlflow_job.log_best, best.metrics, best.params, best.number, best.rounds,
                 str(loop.rule), len(loop.trials))  # fmt: skip
    gate = {
        "metric": loop.rule.metric,
        "operator": loop.rule.op,
        "threshold": loop.rule.threshold,
        "value": loop.value,
        "passed": loop.passed,
        "rule": str(loop.rule),
    }
    result = TrainResult(
        run_id="",  # known to the sidecar: filled in when the run ends
        model_name=spec.name,
        model_version=None,
        metrics=best.metrics,
        gate=gate,
        dataset_digest=held.digest,
        trials=len(loop.trials),
        stopped_by=loop.stopped_by,
        resumes=state.resumes,
        task=spec.task,
        classes=data.classes,
    )
    if not loop.passed:
        result.run_id = sidecar.call(mlflow_job.fail)
        shutil.rmtree(workdir, ignore_errors=True)
        raise GateNotMet(
            f"gate `{loop.rule}` not met after {len(loop.trials)} trial(s) ({loop.stopped_by} "
            f"spent): best {loop.rule.metric} {loop.value:.4f} (trial {best.number}), "
            f"{loop.gap:.4f} short. Nothing was registered. Raise modelyard:training.budget or "
            f"relax modelyard:training.gate in {environment.path}, or improve the data.",
            result,
        )

    say(f"gate `{loop.rule}` passed: {loop.rule.metric} {loop.value:.4f}; logging the model")
    _deliver_model(sidecar, loop, data, kind, split.holdout, sample, gate, target)
    result.run_id, result.model_version = sidecar.call(mlflow_job.finish, register, spec.name)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def read_training_data(
    environment: Environment, spec: ModelSpec, path: Path, target: str,
    network: Network | None = None, source: str | None = None,
) -> TrainingData:  # fmt: skip
    """The data this process trains on, validated: the whole file, or over several workers
    this one's share of it (the leader validates the whole file). `source`: the URI `path` was
    copied from (ml/data/source.py), recorded as the data's source."""
    settings = training_settings(environment, spec)
    if network is None:
        from modelyard.ml.data.dataset import read_dataset

        held = training_data.whole(read_dataset(path), spec, target, settings)
    else:
        held = training_data.share(path, spec, target, settings, network)
    if source is None:
        return held
    record = replace(held.record, path=source) if held.record else None
    return replace(held, source=source, record=record)


def join_training(
    environment: Environment, spec: ModelSpec, held: TrainingData, network: Network,
    say: Say = lambda _: None,
) -> None:  # fmt: skip
    """A follower's part of a training over several workers: each fit the leader posts, on this
    worker's share of the rows (`read_training_data`)."""
    settings = training_settings(environment, spec)
    say(f"worker {network.rank} of {network.size}: holding {len(held.data.labels):,} rows, "
        f"{len(held.split.train):,} of them to train on")  # fmt: skip
    join_fits(held.data, held.split, settings, environment.training_gate(spec.task), network, say)


def _deliver_model(
    sidecar: Sidecar,
    loop: GateLoopResult,
    data: PreparedData,
    kind: PredictionKind,
    holdout_rows: np.ndarray,
    sample: pd.DataFrame,
    gate: dict[str, Any],
    target: str,
) -> None:
    """The best trial's model (logged when it was trained), its plots and reference profile.
    Run again after a crash, it writes the same plots and profile again, and keeps the model
    if the crashed attempt had already named it on the run."""
    booster = loop.booster()
    scores = loop.holdout_scores
    if scores is None:  # trained before a crash
        scores = np.asarray(booster.predict(data.features.iloc[holdout_rows]))
    # Plots first: drawing them is the sidecar's longest step, and it overlaps the profile below.
    importances = dict(zip(booster.feature_name(), booster.feature_importance("gain"), strict=True))
    sidecar.send(mlflow_job.log_plots, importances, kind, data.labels[holdout_rows], scores)
    sidecar.send(mlflow_job.choose_model, loop.best.number, str(loop.model_file), sample,
                 scores[: len(sample)])  # fmt: skip
    sidecar.send(mlflow_job.log_request_sample, sample)
    # What live traffic is compared against for drift: (a sample of) the rows trained on.
    trained = np.ones(len(data.labels), dtype=bool)
    trained[holdout_rows] = False
    train_rows = np.flatnonzero(trained)
    if len(train_rows) > PROFILE_ROWS:
        train_rows = np.sort(
            np.random.default_rng(0).choice(train_rows, PROFILE_ROWS, replace=False)
        )
    reference = data.features.iloc[train_rows]
    sidecar.send(mlflow_job.log_profile,
                 build_profile(reference, np.asarray(booster.predict(reference)), kind))  # fmt: skip
    sidecar.send(mlflow_job.mark_complete, {
        tags.Gate.VALUE: f"{gate['value']:.6f}",
        tags.Gate.PASSED: "true",
        tags.CLASSES: json.dumps(data.classes),
        tags.TARGET: target,
        tags.TASK: data.task,
    })  # fmt: skip


@dataclass
class _JobState:
    """What the training process keeps across crashes besides the checkpoints (the sidecar
    keeps which MLflow runs the job writes to)."""

    path: Path
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # tags the job's MLflow run
    resumes: int = 0
    spent_seconds: float = 0.0

    @classmethod
    def begin(cls, folder: Path) -> _JobState:
        """Load the state of an interrupted attempt (counting this one as a resume), or start."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "state.json"
        if not path.is_file():
            state = cls(path)
        else:
            state = cls(path, **json.loads(path.read_text()))
            state.resumes += 1
        state.save()
        return state

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        write_atomic(self.path, json.dumps(data))

    def record_time(self, seconds: float) -> None:
        self.spent_seconds = seconds
        self.save()


class _SidecarHooks(TrialHooks):
    """Each trial a nested MLflow run, written by the sidecar; progress on the terminal."""

    def __init__(self, sidecar: Sidecar, sample: pd.DataFrame, metric: str, say: Say) -> None:
        self.sidecar, self.sample, self.metric, self.say = sidecar, sample, metric, say

    def trial_started(self, number: int, params: dict[str, Any], resumed: bool) -> None:
        self.sidecar.send(mlflow_job.trial_started, number, params, resumed)
        tuned = {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items()
                 if k not in ("objective", "num_class", "verbose", "seed", "deterministic")}  # fmt: skip
        note = " (resuming from its checkpoint)" if resumed else ""
        self.say(f"trial {number}{note}: {tuned}")

    def metrics_checkpointed(self, number: int, rows: MetricRows) -> None:
        self.sidecar.send(mlflow_job.metrics_checkpointed, number, rows)

    def model_trained(self, number: int, model_file: Path, booster: lgb.Booster) -> None:
        scores = np.asarray(booster.predict(self.sample))  # for the signature: 200 rows
        self.sidecar.send(mlflow_job.log_trial_model, number, str(model_file), self.sample, scores)
        self.sidecar.send(load_matplotlib)  # the plots come next, once the holdout is scored

    def trial_finished(self, outcome: TrialOutcome) -> None:
        self.sidecar.send(
            mlflow_job.trial_finished, outcome.number, outcome.metrics, outcome.passed
        )
        # The study marks the trial done next, and a resumed job would not record it again.
        self.sidecar.wait()
        verdict = "passes" if outcome.passed else "misses"
        self.say(
            f"trial {outcome.number}: {self.metric} {outcome.metrics[self.metric]:.4f} after "
            f"{outcome.rounds} rounds, {verdict} the gate"
        )
