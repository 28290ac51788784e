"""`modelyard train`: validate, run the gate loop under one MLflow run, log, register.

The job's state (the MLflow run it writes to, Optuna's journal, boosting checkpoints) lives in a
folder keyed by what is trained (environment, training settings, dataset digest), so running the
same command after a crash picks the same run up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infra.config import Environment
from ml.data.dataset import Dataset
from ml.data.validation import ValidationReport, validate_dataset
from ml.errors import DataValidationError, GateNotMet
from ml.lineage import git_commit, pipeline_run_id
from ml.spec import ModelSpec
from ml.training.booster import MetricRows
from ml.training.features import PreparedData, prepare, stratified_split
from ml.training.plots import PlotWorker
from ml.training.tuning import GateLoopResult, TrialHooks, TrialOutcome, run_gate_loop

Say = Callable[[str], None]
PROFILE_ROWS = 20_000  # 2,000 rows per decile: stable bins, cheap on a million-row dataset
SCHEMA_SAMPLE_ROWS = 10_000


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

    def to_json(self) -> dict[str, Any]:
        keys = ("run_id", "model_name", "model_version", "metrics", "gate", "dataset_digest")
        data = asdict(self)
        return {**{k: data[k] for k in keys}, "trials": self.trials, "stopped_by": self.stopped_by,
                "resumes": self.resumes}  # fmt: skip


def job_key(environment: Environment, spec: ModelSpec, dataset: Dataset, target: str) -> str:
    what = {
        "environment": environment.name,
        "model": spec.name,
        "target": target,
        "training": environment.training.model_dump(mode="json"),
        "dataset": dataset.digest,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def check_dataset(dataset: Dataset, spec: ModelSpec, target: str) -> ValidationReport:
    """Validation before any training: a failing dataset raises, nothing is trained from it."""
    schema = spec.data_schema if target == spec.target else None
    report = validate_dataset(dataset, target, schema)
    if not report.passed:
        lines = "\n".join(f"  - {p.column}: {p.problem}" for p in report.problems)
        raise DataValidationError(
            f"{dataset.path}: {len(report.problems)} problem(s); nothing was trained:\n{lines}",
            report,
        )
    return report


def train(
    environment: Environment,
    spec: ModelSpec,
    dataset: Dataset,
    target: str,
    state_root: Path,
    project_root: Path,
    say: Say = lambda _: None,
    register: bool = True,
) -> TrainResult:
    """Validate, run the gate loop, log the best model; register it unless `register` is False
    (the pipeline registers in its own stage, after evaluation)."""
    import mlflow

    # Started first: it imports the plotting libraries while the data is checked.
    with PlotWorker() as plot_worker:
        report = check_dataset(dataset, spec, target)
        settings = environment.training
        data = prepare(dataset.frame, target)
        split = stratified_split(
            data.labels, settings.validation_fraction, settings.holdout_fraction, settings.seed
        )

        workdir = state_root / "training" / job_key(environment, spec, dataset, target)
        workdir.mkdir(parents=True, exist_ok=True)
        state = _JobState.load(workdir)
        client = mlflow.MlflowClient()
        experiment_id = _experiment_id(client, environment.mlflow.experiment)
        lineage = {
            "modelyard.environment": environment.name,
            "modelyard.git.commit": git_commit(project_root),
            "modelyard.pipeline.run_id": pipeline_run_id(),
            "modelyard.dataset.digest": dataset.digest,
            "modelyard.dataset.path": str(dataset.path),
        }
        if state.parent_run_id is None:
            run = client.create_run(experiment_id, run_name=f"train-{spec.name}", tags=lineage)
            state.parent_run_id = run.info.run_id
            state.save()
            _log_dataset(run.info.run_id, dataset, target)
            client.log_dict(run.info.run_id, report.to_dict(), "validation/report.json")
        else:
            state.resumes += 1
            state.save()
            client.set_tag(state.parent_run_id, "modelyard.resumes", str(state.resumes))
            say(f"resuming run {state.parent_run_id} (resume #{state.resumes})")
        run_id = state.parent_run_id

        hooks = _MlflowTrialHooks(client, experiment_id, run_id, state, settings.gate.metric, say)
        loop = run_gate_loop(
            data, split, settings, workdir, hooks,
            spent_seconds=state.spent_seconds, on_time_spent=state.record_time,
        )  # fmt: skip
        _log_best(client, run_id, loop)
        gate = {
            "metric": loop.rule.metric,
            "operator": loop.rule.op,
            "threshold": loop.rule.threshold,
            "value": loop.value,
            "passed": loop.passed,
            "rule": str(loop.rule),
        }
        result = TrainResult(
            run_id=run_id,
            model_name=spec.name,
            model_version=None,
            metrics=loop.best.metrics,
            gate=gate,
            dataset_digest=dataset.digest,
            trials=len(loop.trials),
            stopped_by=loop.stopped_by,
            resumes=state.resumes,
        )
        if not loop.passed:
            client.set_tag(run_id, "modelyard.gate.passed", "false")
            client.set_terminated(run_id, status="FAILED")
            shutil.rmtree(workdir, ignore_errors=True)
            raise GateNotMet(
                f"gate `{loop.rule}` not met after {len(loop.trials)} trial(s) ({loop.stopped_by} "
                f"spent): best {loop.rule.metric} {loop.value:.4f} (trial {loop.best.number}), "
                f"{loop.gap:.4f} short. Nothing was registered. Raise modelyard:training.budget or "
                f"relax modelyard:training.gate in {environment.path}, or improve the data.",
                result,
            )

        say(f"gate `{loop.rule}` passed: {loop.rule.metric} {loop.value:.4f}; logging the model")
        # The model may have been logged before a crash.
        if "modelyard.model_id" not in client.get_run(run_id).data.tags:
            _log_model(client, run_id, loop, data, split.holdout, gate, target, plot_worker)
        client.set_terminated(run_id, status="FINISHED")
        shutil.rmtree(workdir, ignore_errors=True)
        if register:
            result.model_version = register_run(client, spec.name, run_id)
        return result


def register_run(client: Any, model_name: str, run_id: str) -> int:
    """Register the model a finished training run logged, tagged with the run's lineage and
    gate result. Refuses a run whose gate did not pass; reuses the version if already done."""
    from ml.registry import register_version

    tags = client.get_run(run_id).data.tags
    if tags.get("modelyard.gate.passed") != "true" or "modelyard.model_id" not in tags:
        raise GateNotMet(f"run {run_id} has no model that passed its gate: nothing to register")
    version_tags = {
        k: v for k, v in tags.items() if k.startswith("modelyard.") and k not in _RUN_ONLY_TAGS
    }
    return register_version(
        client,
        model_name,
        tags["modelyard.model_uri"],
        tags["modelyard.model_id"],
        run_id,
        version_tags,
    )


_RUN_ONLY_TAGS = {
    "modelyard.model_uri",
    "modelyard.model_id",
    "modelyard.trials",
    "modelyard.resumes",
}


def _log_model(
    client: Any,
    run_id: str,
    loop: GateLoopResult,
    data: PreparedData,
    holdout_rows: np.ndarray,
    gate: dict[str, Any],
    target: str,
    plot_worker: PlotWorker,
) -> None:
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    from ml.monitoring.profile import PROFILE_ARTIFACT, build_profile

    booster = loop.booster()
    holdout = data.features.iloc[holdout_rows]
    scores = loop.holdout_scores
    if scores is None:
        scores = np.asarray(booster.predict(holdout))
    importances = dict(zip(booster.feature_name(), booster.feature_importance("gain"), strict=True))
    plots_dir = Path(tempfile.mkdtemp(prefix="modelyard-plots-"))
    # Drawn in the worker while the profile and the model are logged here.
    plots = plot_worker.draw(importances, data.labels[holdout_rows], scores, plots_dir)
    # What live traffic is compared against for drift: (a sample of) the rows trained on.
    train_rows = np.setdiff1d(np.arange(len(data.labels)), holdout_rows)
    if len(train_rows) > PROFILE_ROWS:
        train_rows = np.sort(
            np.random.default_rng(0).choice(train_rows, PROFILE_ROWS, replace=False)
        )
    reference = data.features.iloc[train_rows]
    profile = build_profile(reference, np.asarray(booster.predict(reference)), seed=0)
    client.log_dict(run_id, profile, PROFILE_ARTIFACT)

    sample = _as_request_frame(holdout.head(200))
    with mlflow.start_run(run_id=run_id):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(sample, scores[: len(sample)]),
            input_example=sample.head(5),
            # MLflow's check runs the pyfunc on plain strings, which LightGBM's native flavor
            # only takes as pandas categories; modelyard's server maps them (ml/serving).
            validate_serving_input=False,
            # Given, not inferred: inference costs seconds and guesses.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
        )
    try:
        plots.result()
        client.log_artifacts(run_id, str(plots_dir), "plots")
    finally:
        shutil.rmtree(plots_dir, ignore_errors=True)
    from mlflow.entities import RunTag

    # The model's identity is written last: its presence means the run is complete.
    tags = {
        "modelyard.gate.value": f"{gate['value']:.6f}",
        "modelyard.gate.passed": "true",
        "modelyard.classes": json.dumps(data.classes),
        "modelyard.target": target,
        "modelyard.model_uri": info.model_uri,
        "modelyard.model_id": info.model_id,
    }
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _as_request_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Features as a client sends them: categories as plain strings."""
    frame = features.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
    return frame


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name))


def _log_dataset(run_id: str, dataset: Dataset, target: str) -> None:
    """The dataset as an MLflow run input: its content digest, source, schema and size.

    MLflow infers the schema by visiting every value in Python (tens of seconds on a million
    rows): it is inferred from a sample here, and the size reported is the whole file's."""
    import mlflow
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag

    frame = dataset.frame
    sample = frame.sample(min(len(frame), SCHEMA_SAMPLE_ROWS), random_state=0)
    logged = mlflow.data.from_pandas(  # type: ignore[attr-defined]
        sample, source=str(dataset.path.resolve()), targets=target,
        name=dataset.path.name, digest=dataset.digest[:32],
    )  # fmt: skip
    entity = logged._to_mlflow_entity()
    whole = DatasetEntity(
        name=entity.name,
        digest=entity.digest,
        source_type=entity.source_type,
        source=entity.source,
        schema=entity.schema,
        profile=json.dumps({"num_rows": len(frame), "num_elements": int(frame.size)}),
    )
    tags = [InputTag(key="mlflow.data.context", value="training")]
    mlflow.MlflowClient().log_inputs(run_id, datasets=[DatasetInput(whole, tags=tags)])


def _log_best(client: Any, run_id: str, loop: GateLoopResult) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    best = loop.best
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in best.metrics.items()],
        params=[Param(k, str(v)) for k, v in sorted(best.params.items())]
        + [Param("best_trial", str(best.number)), Param("rounds", str(best.rounds))],
    )
    client.set_tag(run_id, "modelyard.gate.rule", str(loop.rule))
    client.set_tag(run_id, "modelyard.trials", str(len(loop.trials)))


@dataclass
class _JobState:
    """What survives a crash besides the checkpoints: which MLflow runs this job writes to."""

    path: Path
    parent_run_id: str | None = None
    trial_runs: dict[str, str] = field(default_factory=dict)  # params key -> nested run id
    resumes: int = 0
    spent_seconds: float = 0.0

    @classmethod
    def load(cls, folder: Path) -> _JobState:
        path = folder / "state.json"
        if not path.is_file():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, **data)

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def record_time(self, seconds: float) -> None:
        self.spent_seconds = seconds
        self.save()


class _MlflowTrialHooks(TrialHooks):
    """Each trial a nested run; a trial resumed after a crash keeps writing to its own run."""

    def __init__(
        self, client: Any, experiment_id: str, parent: str, state: _JobState, metric: str, say: Say
    ) -> None:
        self.client, self.experiment_id, self.parent = client, experiment_id, parent
        self.metric = metric
        self.state, self.say = state, say
        self.runs: dict[int, str] = {}

    def trial_started(self, number: int, params: dict[str, Any], resumed: bool) -> None:
        from mlflow.entities import Param

        key = json.dumps(params, sort_keys=True)
        run_id = self.state.trial_runs.get(key)
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"trial-{number}",
                tags={"mlflow.parentRunId": self.parent, "modelyard.trial": str(number)},
            )
            run_id = run.info.run_id
            self.client.log_batch(
                run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
            )
            self.state.trial_runs[key] = run_id
            self.state.save()
        elif resumed:
            self.client.set_tag(run_id, "modelyard.resumed", "true")
        self.runs[number] = run_id
        tuned = {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items()
                 if k not in ("objective", "verbose", "seed", "deterministic")}  # fmt: skip
        note = " (resuming from its checkpoint)" if resumed else ""
        self.say(f"trial {number}{note}: {tuned}")

    def metrics_checkpointed(self, number: int, rows: MetricRows) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(f"valid_{name}", value, at, step) for step, name, value, at in rows]
        for start in range(0, len(metrics), 1000):  # the REST API takes 1000 per batch
            self.client.log_batch(self.runs[number], metrics=metrics[start : start + 1000])

    def trial_finished(self, outcome: TrialOutcome) -> None:
        from mlflow.entities import Metric

        run_id = self.runs[outcome.number]
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, v, now, 0) for k, v in outcome.metrics.items()]
        )
        self.client.set_tag(run_id, "modelyard.gate.passed", str(outcome.passed).lower())
        self.client.set_terminated(run_id, status="FINISHED")
        verdict = "passes" if outcome.passed else "misses"
        self.say(
            f"trial {outcome.number}: {self.metric} {outcome.metrics[self.metric]:.4f} after "
            f"{outcome.rounds} rounds, {verdict} the gate"
        )
