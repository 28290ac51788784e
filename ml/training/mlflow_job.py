"""Everything a training job writes to MLflow, and the plots behind it.

These functions run in the job's sidecar process (ml/training/sidecar.py), one at a time, in the
order the training process sends them. A training resumed after a crash writes to the same runs:
each is created with a tag naming its job (and its trial's parameters), and found by it again,
whatever instant the crash came at. The metric rows handed over again carry their original
timestamps, and MLflow stores an identical row once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.contracts import artifacts, tags
from modelyard.contracts.atomic_file import write_atomic
from modelyard.ml.errors import GateNotMet
from modelyard.ml.training.sidecar import Sidecar

if TYPE_CHECKING:  # this module is imported by the training process before pandas is
    import numpy as np
    import pandas as pd
    from modelyard.ml.prediction_kind import PredictionKind


@dataclass(frozen=True)
class DatasetRecord:
    """What MLflow records of the dataset: a sample to read column types from, and facts about
    the whole file (MLflow infers a schema by visiting every value in Python: tens of seconds on
    a million rows)."""

    path: str
    name: str
    digest: str
    target: str
    rows: int
    elements: int
    sample: pd.DataFrame
    nullable: tuple[str, ...]  # columns with a missing value anywhere in the file


_RUN_FILE = "run.json"  # in the state folder: the job's run id, for the training process to show


def parent_run_of(workdir: Path) -> str | None:
    """The job's MLflow run, if a previous attempt created it (read by the training process)."""
    path = workdir / _RUN_FILE
    return str(json.loads(path.read_text())["run_id"]) if path.is_file() else None


@dataclass
class _Job:
    client: Any
    experiment_id: str
    run_id: str
    runs: dict[int, str] = field(default_factory=dict)  # trial number -> nested run id
    models: dict[int, Any] = field(default_factory=dict)  # trial number -> MLflow's ModelInfo
    # The tags naming the model the job delivers; found on the run if an attempt that crashed
    # had completed it.
    identity: dict[str, str] = field(default_factory=dict)
    # What its predictions are (ml/prediction_kind.py), written into every logged model's MLmodel.
    prediction: dict[str, Any] = field(default_factory=dict)


_job: _Job | None = None  # the sidecar serves one training job


def _current() -> _Job:
    assert _job is not None, "open_job was not called"
    return _job


def tracking_sidecar(tracking_uri: str) -> Sidecar:
    """The sidecar for one training job. Start it first: it imports MLflow while the training
    process imports LightGBM and reads the data."""
    return Sidecar(_connect, tracking_uri)


def _connect(tracking_uri: str) -> None:
    from modelyard.ml.tracking import configure
    from modelyard.ml.training.lean_imports import import_lightgbm_alone

    import_lightgbm_alone()  # before MLflow's LightGBM flavor imports it with scikit-learn
    configure(tracking_uri)


def open_job(
    workdir: str,
    job_id: str,
    experiment: str,
    run_name: str,
    lineage: dict[str, str],
    dataset: DatasetRecord,
    report: dict[str, Any],
    resumes: int,
    prediction: dict[str, Any],
) -> None:
    """Create the job's run, with its lineage, dataset and validation report, or pick up the
    run a crashed attempt created."""
    import mlflow
    from modelyard.ml.tracking import experiment_id_of

    global _job
    client = mlflow.MlflowClient()
    experiment_id = experiment_id_of(client, experiment)
    found = client.search_runs([experiment_id], f"tags.`{tags.JOB}` = '{job_id}'", max_results=1)
    identity: dict[str, str] = {}
    if found:
        run_id = found[0].info.run_id
        client.set_tag(run_id, tags.RESUMES, str(resumes))
        if tags.MODEL_ID in found[0].data.tags:  # its identity tags are written last
            identity = {k: found[0].data.tags[k] for k in (tags.MODEL_URI, tags.MODEL_ID)}
    else:
        run_tags = {**lineage, tags.JOB: job_id, tags.RESUMES: str(resumes)}
        run_id = client.create_run(experiment_id, run_name=run_name, tags=run_tags).info.run_id
        _log_dataset(client, run_id, dataset)
        client.log_dict(run_id, report, artifacts.VALIDATION_REPORT)
    write_atomic(Path(workdir) / _RUN_FILE, json.dumps({"run_id": run_id}))
    _job = _Job(client, experiment_id, run_id, identity=identity, prediction=prediction)


def trial_started(number: int, params: dict[str, Any], resumed: bool) -> None:
    """Each trial a nested run; a trial resumed after a crash keeps writing to its own run."""
    from mlflow.entities import Param

    job = _current()
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]
    found = job.client.search_runs(
        [job.experiment_id],
        f"tags.mlflow.parentRunId = '{job.run_id}' and tags.`{tags.TRIAL_KEY}` = '{key}'",
        max_results=1,
    )
    if found:
        trial_run = found[0].info.run_id
        if resumed:
            job.client.set_tag(trial_run, tags.RESUMED, "true")
    else:
        trial_tags = {
            "mlflow.parentRunId": job.run_id,
            tags.TRIAL: str(number),
            tags.TRIAL_KEY: key,
        }
        if resumed:
            trial_tags[tags.RESUMED] = "true"
        run = job.client.create_run(job.experiment_id, run_name=f"trial-{number}", tags=trial_tags)
        trial_run = run.info.run_id
        job.client.log_batch(
            trial_run, params=[Param(k, str(v)) for k, v in sorted(params.items())]
        )
    job.runs[number] = trial_run


def metrics_checkpointed(number: int, rows: list[tuple[int, str, float, int]]) -> None:
    from mlflow.entities import Metric

    job = _current()
    metrics = [Metric(f"valid_{name}", value, at, step) for step, name, value, at in rows]
    for start in range(0, len(metrics), 1000):  # the REST API takes 1000 per batch
        job.client.log_batch(job.runs[number], metrics=metrics[start : start + 1000])


def trial_finished(number: int, metrics: dict[str, float], passed: bool) -> None:
    from mlflow.entities import Metric, RunTag

    job = _current()
    trial_run = job.runs[number]
    now = int(time.time() * 1000)
    job.client.log_batch(
        trial_run,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        tags=[RunTag(tags.Gate.PASSED, str(passed).lower())],
    )
    job.client.set_terminated(trial_run, status="FINISHED")


def log_best(
    metrics: dict[str, float],
    params: dict[str, Any],
    trial: int,
    rounds: int,
    rule: str,
    trials: int,
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    job = _current()
    now = int(time.time() * 1000)
    job.client.log_batch(
        job.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in sorted(params.items())]
        + [Param("best_trial", str(trial)), Param("rounds", str(rounds))],
        tags=[RunTag(tags.Gate.RULE, rule), RunTag(tags.TRIALS, str(trials))],
    )


def fail() -> str:
    """End the run of a job whose gate was not met; returns its id."""
    job = _current()
    job.client.set_tag(job.run_id, tags.Gate.PASSED, "false")
    job.client.set_terminated(job.run_id, status="FAILED")
    return job.run_id


def log_trial_model(
    number: int, model_file: str, sample: pd.DataFrame, sample_scores: np.ndarray
) -> None:
    """A trial's model, in the trial's run, as soon as it is trained: logged while the training
    process scores the holdout, not after the gate."""
    _current().models[number] = _log_model(_current().runs[number], model_file, sample,
                                           sample_scores)  # fmt: skip


def choose_model(
    number: int, model_file: str, sample: pd.DataFrame, sample_scores: np.ndarray
) -> None:
    """The model the job delivers: the best trial's. A trial finished before a crash had its
    model logged by the sidecar that crashed with it, so it is logged again, in the job's run,
    unless that attempt had already completed the run."""
    job = _current()
    if job.identity:
        return
    model = job.models.get(number) or _log_model(job.run_id, model_file, sample, sample_scores)
    job.identity = {tags.MODEL_URI: model.model_uri, tags.MODEL_ID: model.model_id}


def _log_model(
    run_id: str, model_file: str, sample: pd.DataFrame, sample_scores: np.ndarray
) -> Any:
    """A LightGBM model with its signature and an input example; returns MLflow's ModelInfo."""
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature
    from modelyard.ml.prediction_kind import METADATA_KEY

    request = _as_request_frame(sample)
    with mlflow.start_run(run_id=run_id):
        return mlflow.lightgbm.log_model(
            lgb.Booster(model_file=model_file),
            name="model",
            signature=infer_signature(request, sample_scores),
            input_example=request.head(5),
            # MLflow's check runs the pyfunc on plain strings, which LightGBM's native flavor
            # only takes as pandas categories; modelyard's server maps them (ml/serving).
            validate_serving_input=False,
            # Given, not inferred: inference costs seconds and guesses.
            pip_requirements=_requirements(),
            metadata={METADATA_KEY: _current().prediction},
        )


def log_profile(profile: dict[str, Any]) -> None:
    """What live traffic is compared against for drift (ml/monitoring)."""

    job = _current()
    job.client.log_dict(job.run_id, profile, artifacts.PROFILE)


def log_request_sample(sample: pd.DataFrame) -> None:
    """Held-out rows as a client sends them (features only): what the smoke test sends when the
    pipeline's data is not on its machine (a --data URI the training Job read)."""
    job = _current()
    records = json.loads(_as_request_frame(sample).to_json(orient="records"))
    job.client.log_dict(job.run_id, {"dataframe_records": records}, artifacts.REQUEST_SAMPLE)


def log_plots(
    importances: dict[str, float], kind: PredictionKind, labels: np.ndarray, scores: np.ndarray
) -> None:
    from modelyard.ml.training.plots import write_plots

    job = _current()
    folder = Path(tempfile.mkdtemp(prefix="modelyard-plots-"))
    try:
        write_plots(importances, kind, labels, scores, folder)
        job.client.log_artifacts(job.run_id, str(folder), artifacts.PLOTS)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def mark_complete(completion: dict[str, str]) -> None:
    """The tags naming the model are written last: their presence means the run is complete."""
    from mlflow.entities import RunTag

    job = _current()
    assert job.identity, "choose_model first"
    job.client.log_batch(
        job.run_id, tags=[RunTag(k, v) for k, v in {**completion, **job.identity}.items()]
    )


def finish(register: bool, model_name: str) -> tuple[str, int | None]:
    """End the run; register its model unless the pipeline registers in a later stage.
    Returns the run's id and the version registered."""
    job = _current()
    job.client.set_terminated(job.run_id, status="FINISHED")
    version = register_run(job.client, model_name, job.run_id) if register else None
    return job.run_id, version


def register_run(client: Any, model_name: str, run_id: str) -> int:
    """Register the model a finished training run logged, tagged with the run's lineage and
    gate result. Refuses a run whose gate did not pass; reuses the version if already done."""
    from modelyard.ml.registry import register_version

    run_tags = client.get_run(run_id).data.tags
    if not tags.Gate.from_tags(run_tags).passed or tags.MODEL_ID not in run_tags:
        raise GateNotMet(f"run {run_id} has no model that passed its gate: nothing to register")
    return register_version(
        client,
        model_name,
        run_tags[tags.MODEL_URI],
        run_tags[tags.MODEL_ID],
        run_id,
        tags.version_tags(run_tags),
    )


def _requirements() -> list[str]:
    import lightgbm as lgb
    import mlflow
    import numpy as np
    import pandas as pd

    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lgb.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def _as_request_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Features as a client sends them: categories as plain strings."""
    import pandas as pd

    frame = features.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
    return frame


def _log_dataset(client: Any, run_id: str, dataset: DatasetRecord) -> None:
    """The dataset as an MLflow run input: its content digest, source, schema and size. Column
    types come from the sample; which columns may be missing, from the whole file."""
    import mlflow
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema, TensorSpec
    from modelyard.ml.data.source import is_uri

    # MLflow resolves paths and some stores' URIs to a source of its own, but not runs:/ or
    # mlflow-artifacts:/ (ml/data/source.py): a URI is recorded as it was given.
    uri = is_uri(dataset.path)
    logged = mlflow.data.from_pandas(  # type: ignore[attr-defined]
        dataset.sample, source=None if uri else dataset.path, targets=dataset.target,
        name=dataset.name, digest=dataset.digest[:32],
    )  # fmt: skip
    schema = None
    if logged.schema is not None:
        columns: list[ColSpec | TensorSpec] = [
            ColSpec(c.type, c.name, required=c.name not in dataset.nullable)
            for c in logged.schema.inputs
        ]
        schema = json.dumps({"mlflow_colspec": Schema(columns).to_dict()})
    entity = logged._to_mlflow_entity()
    whole = DatasetEntity(
        name=entity.name,
        digest=entity.digest,
        source_type="uri" if uri else entity.source_type,
        source=json.dumps({"uri": dataset.path}) if uri else entity.source,
        schema=schema,
        profile=json.dumps({"num_rows": dataset.rows, "num_elements": dataset.elements}),
    )
    context = [InputTag(key="mlflow.data.context", value="training")]
    client.log_inputs(run_id, datasets=[DatasetInput(whole, tags=context)])
