"""The pipeline's stages, in the order the Jenkinsfile runs them. Each is one function over the
run's context; `modelyard pipeline stage NAME` runs one, `modelyard pipeline run` runs them all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.contracts import artifacts, tags, variables
from modelyard.contracts.digests import tree_digest
from modelyard.contracts.environment import Environment, load_environment, project_root
from modelyard.contracts.environment.lightgbm_params import check_training_params
from modelyard.ml.data import source
from modelyard.pipelines.errors import USER_ERRORS, PipelineError, RolledBack
from modelyard.pipelines.pipeline.context import PipelineContext

Say = Callable[[str], None]
STAGING, PRODUCTION = "staging", "production"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[PipelineContext, Environment, Say], None]
    summary: str
    supervised: bool = False  # run as a child process the monitor restarts if it dies


def checkout(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    from modelyard.ml.lineage import git_commit

    # Jenkins checks the commit out before this stage; locally the work tree is the checkout.
    ctx.git_commit = git_commit(project_root())
    say(f"commit {ctx.git_commit[:12]}, model {ctx.model}")


def unit_tests(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    junit = ctx.folder / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow and not docker",
               f"--junitxml={junit}", *environment.pipeline.test_paths]  # fmt: skip
    result = subprocess.run(
        command, cwd=project_root(), capture_output=True, text=True, check=False
    )
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    if result.returncode != 0:
        raise PipelineError(f"unit tests failed ({last}); JUnit report {junit}")
    say(f"{last}; JUnit report {junit}")


def validate_data(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    from modelyard.ml.data.dataset import read_dataset
    from modelyard.ml.spec import load_model_spec, model_file
    from modelyard.ml.training.training_data import check_dataset

    spec = load_model_spec(ctx.model)
    # What the train stage will pass to LightGBM: the environment's params and the model's.
    check_training_params(environment, (model_file(spec.name), spec.params))
    if source.is_uri(ctx.data) and environment.pipeline.train_in == "kubernetes":
        size = source.check_readable(ctx.data, environment.mlflow)
        say(f"{ctx.data} ({size / 2**20:.1f} MiB) is there; the training Job reads it where it "
            "runs and validates it before training, so it is not copied to this machine")  # fmt: skip
        return
    report = check_dataset(read_dataset(_data_file(ctx, environment)), spec, spec.target)
    say(f"{report.rows} rows, {report.columns} columns valid; dataset version {report.digest[:12]}")


def train(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    from modelyard.pipelines.pipeline import training_container

    check_training_params(environment)  # before a container, MLflow or the data

    where = environment.pipeline.train_in
    if where == "container" and not training_container.inside():
        training_container.train_in_container(ctx, environment, say)
        return
    if where == "kubernetes" and not training_container.inside():
        from modelyard.pipelines.pipeline.training_job import train_on_kubernetes

        train_on_kubernetes(ctx, environment, say)
        return
    from modelyard.contracts.state import state_dir
    from modelyard.ml.spec import load_model_spec
    from modelyard.ml.tracking import reachable_uri
    from modelyard.ml.training.distributed import Network
    from modelyard.ml.training.mlflow_job import tracking_sidecar

    spec = load_model_spec(ctx.model)
    network = Network.from_environment(state_dir())  # a pod of a Job of several workers
    data, origin = _data_file(ctx, environment), _data_source(ctx)
    if network is not None and not network.leads:
        from modelyard.ml.training.run import join_training, read_training_data

        held = read_training_data(environment, spec, data, spec.target, network, origin)
        join_training(environment, spec, held, network, say)
        return
    try:
        with tracking_sidecar(reachable_uri(environment.mlflow)) as sidecar:
            from modelyard.ml.training.lean_imports import import_lightgbm_alone

            import_lightgbm_alone()
            # pandas too only now: the sidecar imports MLflow meanwhile.
            from modelyard.ml.training.run import read_training_data
            from modelyard.ml.training.run import train as train_model

            held = read_training_data(environment, spec, data, spec.target, network, origin)
            result = train_model(environment, spec, held, spec.target, state_dir(),
                                 project_root(), sidecar, say=say, register=False,
                                 network=network)  # fmt: skip
    except USER_ERRORS:
        if network is not None:
            network.finish()  # a reported mistake ends the Job: the followers leave with it
        raise
    if network is not None:
        network.finish()
    ctx.training_run_id, ctx.metrics = result.run_id, result.metrics
    gate = result.gate
    say(f"gate `{gate['rule']}` passed with {gate['value']:.4f} after {result.trials} trial(s)")
    result_file = os.environ.get(variables.TRAINING_RESULT_FILE)
    if result_file:  # inside a training Job: the stage that started it reads this back
        Path(result_file).write_text(
            json.dumps({"training_run_id": result.run_id, "metrics": result.metrics})
        )


def _data_file(ctx: PipelineContext, environment: Environment) -> Path:
    """The run's data as a file on this machine (a URI's copy, ml/data/source.py)."""
    from modelyard.contracts.state import state_dir

    return source.local_file(ctx.data, state_dir(), environment.mlflow)


def _data_source(ctx: PipelineContext) -> str | None:
    return ctx.data if source.is_uri(ctx.data) else None


def evaluate(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    """The evidence report: the candidate's holdout metrics beside what staging serves now."""
    import mlflow
    from modelyard.ml.spec import load_model_spec
    from modelyard.ml.tracking import connect

    connect(environment.mlflow)
    if ctx.training_run_id is None:
        raise PipelineError("nothing to evaluate: the train stage has not produced a model")
    client = mlflow.MlflowClient()
    champion = _served_version(client, ctx.model, STAGING)
    champion_metrics = client.get_run(champion.run_id).data.metrics if champion else {}
    lines = [f"# Evaluation of run {ctx.training_run_id}", "",
             "| metric | candidate | staging champion |", "|---|---|---|"]  # fmt: skip
    for name, value in sorted(ctx.metrics.items()):
        other = champion_metrics.get(name)
        lines.append(f"| {name} | {value:.4f} | {'-' if other is None else f'{other:.4f}'} |")
    who = f"version {champion.version}" if champion else "nothing yet (first promotion)"
    lines += ["", f"Staging serves {who}. Promotion rules decide; this is the evidence."]
    client.log_text(ctx.training_run_id, "\n".join(lines) + "\n", artifacts.EVALUATION_REPORT)
    metric = environment.training_gate(load_model_spec(ctx.model).task).metric
    say(f"candidate {metric} {ctx.metrics.get(metric, float('nan')):.4f}; staging serves {who}")


def register(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    import mlflow
    from modelyard.ml.tracking import connect
    from modelyard.ml.training.mlflow_job import register_run

    connect(environment.mlflow)
    if ctx.training_run_id is None:
        raise PipelineError("nothing to register: the train stage has not produced a model")
    ctx.version = register_run(mlflow.MlflowClient(), ctx.model, ctx.training_run_id)
    say(f"registered {ctx.model} version {ctx.version}")


def package(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    """The model artifact, identified by its digest, and where the environment has a registry,
    the serving image built from it and pushed there (pipeline.package)."""
    import mlflow
    from modelyard.ml.tracking import connect
    from modelyard.pipelines.pipeline.packaging import package_image

    connect(environment.mlflow)
    target = ctx.folder / "package"
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{ctx.model}/{ctx.version}", dst_path=str(target)
        )
    )
    digest = tree_digest(local)
    client = mlflow.MlflowClient()
    version = str(ctx.version)
    client.set_model_version_tag(ctx.model, version, tags.PACKAGE_DIGEST, digest)
    ctx.package = {"path": str(local), "digest": digest}
    say(f"model artifact {local} (sha256:{digest[:12]}) recorded on version {version}")
    run_id = client.get_model_version(ctx.model, version).run_id or ""
    image = package_image(environment, local, {"name": ctx.model, "version": version,
                                               "run_id": run_id}, say)  # fmt: skip
    if image is not None:
        for key, value in image.to_tags().items():
            client.set_model_version_tag(ctx.model, version, key, value)
        ctx.package.update(image=image.ref, image_digest=image.digest)
        say(f"serving image {image.ref} recorded on version {version}")


def deploy_staging(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    if _trained(ctx, STAGING, say):
        _promote(ctx, STAGING, [], say)
    _deploy(ctx, STAGING, say)


def _trained(ctx: PipelineContext, target: str, say: Say) -> bool:
    """Whether this run registered a version to promote. A build for a change of settings alone
    (Jenkins' BUILD_KIND `deploy`) trains nothing: it deploys what the environment file says."""
    if ctx.version is not None:
        return True
    say(f"{target}: this run registered no version: deploying what its environment file says")
    return False


def smoke_test(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    import numpy as np
    import requests
    from modelyard.ml.monitoring.sampling import FLUSH_SECONDS
    from modelyard.ml.prediction_kind import PredictionKind
    from modelyard.ml.spec import load_model_spec
    from modelyard.pipelines.deploy_targets import await_serving, reachable
    from modelyard.pipelines.serving_auth import bearer_headers

    address = ctx.serving.get(STAGING)
    if not address:
        raise PipelineError("staging is not serving: run the deploy-staging stage first")
    await_serving(address)
    spec = load_model_spec(ctx.model)
    expected = ctx.version if ctx.version is not None else _alias_version(ctx.model, STAGING)
    records = _smoke_records(ctx, environment, spec.target, expected)
    with reachable(address) as url:
        latencies, problems = [], []
        session = requests.Session()
        session.headers.update(bearer_headers(load_environment(STAGING)))
        answered = session.get(f"{url}/version", timeout=5).json()
        served = answered.get("stable") or {}
        kind = PredictionKind.from_metadata(served.get("prediction")) or PredictionKind()
        for record in records:
            started = time.perf_counter()
            response = session.post(
                f"{url}/invocations", json={"dataframe_records": [record]}, timeout=10
            )
            latencies.append((time.perf_counter() - started) * 1000)
            problem = kind.answer_problem(response.json(), 1) if response.ok else (
                f"HTTP {response.status_code}: {response.text[:200]}")  # fmt: skip
            if problem:
                problems.append(problem)
    # The promotion that follows reads these requests' live samples as drift evidence: let every
    # worker write them out first.
    time.sleep(FLUSH_SECONDS + 0.5)
    p99 = float(np.percentile(latencies, 99))
    if problems or kind.task != spec.task or str(answered.get("model_version")) != str(expected):
        raise PipelineError(
            f"smoke test against {address} failed: {len(problems)}/{len(latencies)} bad answers"
            f"{f' (first: {problems[0]})' if problems else ''}, serving version "
            f"{answered.get('model_version')} of a {kind.task} model (expected version "
            f"{expected} of {spec.name}, a {spec.task} model)"
        )
    say(
        f"{len(latencies)} requests to {address}: all answered by version {expected}, "
        f"p99 {p99:.1f} ms"
    )


def _smoke_records(
    ctx: PipelineContext, environment: Environment, target: str, version: int | None
) -> list[dict[str, Any]]:
    """The first pipeline.smokeRequests rows of the run's data file, without the target; when the
    data is a URI (not on this machine), the held-out rows the training run of the version
    staging serves logged, as many times over as it takes."""
    count = environment.pipeline.smoke_requests
    if not source.is_uri(ctx.data):
        from modelyard.ml.data.dataset import read_dataset

        rows = read_dataset(Path(ctx.data)).frame.drop(columns=[target]).head(count)
        records: list[dict[str, Any]] = json.loads(rows.to_json(orient="records"))
        return records
    import mlflow
    from mlflow.exceptions import MlflowException
    from modelyard.ml.tracking import connect

    connect(environment.mlflow)  # the registry the run's stages registered in, as they do
    run = mlflow.MlflowClient().get_model_version(ctx.model, str(version)).run_id
    try:
        sample = mlflow.artifacts.load_dict(f"runs:/{run}/{artifacts.REQUEST_SAMPLE}")
    except MlflowException:
        raise PipelineError(
            f"--data {ctx.data} is not on this machine, and version {version} of {ctx.model} "
            f"(run {run}) logged no {artifacts.REQUEST_SAMPLE} to send instead: it was trained "
            "by an older kit. Run the smoke test with --data a local copy of the data."
        ) from None
    rows = sample["dataframe_records"]
    return [rows[i % len(rows)] for i in range(count)]


def promote_production(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    if _trained(ctx, PRODUCTION, say):
        _promote(ctx, PRODUCTION, ctx.approvers or environment.pipeline.approvers, say)


def deploy_production(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    _deploy(ctx, PRODUCTION, say)


def notify_team(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    from modelyard.pipelines.notify import notify

    subject = (f"{ctx.model} version {ctx.version} is serving in production"
               if ctx.promoted.get(PRODUCTION) else f"{ctx.model} version {ctx.version} is ready")  # fmt: skip
    if ctx.version is None:
        subject = f"{ctx.model}: a settings change is deployed (this run trained no version)"
    payload = {"pipeline_run": ctx.run_id, "model": ctx.model, "version": ctx.version,
               "metrics": ctx.metrics, "serving": ctx.serving}  # fmt: skip
    for delivery in notify(environment, "success", subject, payload):
        say(f"{delivery.channel}: {'sent' if delivery.ok else 'FAILED'} ({delivery.detail})")


STAGES: list[Stage] = [
    Stage("checkout", checkout, "record the commit being built"),
    Stage("unit-tests", unit_tests, "fast tests, JUnit report"),
    Stage("validate-data", validate_data, "schema, ranges, nulls, target"),
    Stage("train", train, "LightGBM, tuned until the gate passes (checkpointed)", supervised=True),
    Stage("evaluate", evaluate, "holdout metrics beside the staging champion"),
    Stage("register", register, "new model version with lineage tags"),
    Stage("package", package, "artifact digest; serving image pushed to the registry"),
    Stage("deploy-staging", deploy_staging, "promote to staging under its rules, deploy"),
    Stage("smoke-test", smoke_test, "real requests against staging"),
    Stage("promote-production", promote_production, "production's rules and approvals"),
    Stage("deploy-production", deploy_production, "roll production to the new version"),
    Stage("notify", notify_team, "tell the team"),
]


def stage_named(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise PipelineError(f"no stage named {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def rollback_after_failed_deploy(ctx: PipelineContext, target: str, reason: str, say: Say) -> None:
    """A deploy that failed after its promotion took effect goes back to what served before."""
    from modelyard.pipelines.promotion import rollback

    if not ctx.promoted.get(target):
        return
    outcome = rollback(ctx.model, target, None, reason, [])
    say(f"rolled {target} back to version {outcome.version} ({reason})")
    ctx.promoted[target] = False
    if load_environment(target).serving.platform != "process":
        # A local server follows the alias by itself; a stack needs the next `up`.
        _deploy(ctx, target, say)


def _promote(ctx: PipelineContext, target: str, approvers: list[str], say: Say) -> None:
    """Promote the run's version to `target` under its rules; every gate is printed."""
    from modelyard.pipelines.promotion import promote

    outcome = promote(ctx.model, target, str(ctx.version), approvers)
    for gate in outcome.gates:
        say(f"  {'pass' if gate.passed else 'FAIL'}  {gate.name}: {gate.evidence}")
    ctx.promoted[target] = outcome.promoted
    if not outcome.promoted:
        failed = "; ".join(f"{g.name}: {g.evidence}" for g in outcome.gates if not g.passed)
        raise PipelineError(f"{target} refused version {ctx.version}: {failed}")


def _deploy(ctx: PipelineContext, target: str, say: Say) -> None:
    from modelyard.pipelines.deploy_targets import deploy_environment

    try:
        deployed = deploy_environment(target, say, ctx.model)
    except RolledBack:
        ctx.promoted[target] = False  # the canary's analysis already rolled it back, durably
        raise
    ctx.serving[target] = deployed.address
    say(f"{target}: {deployed.message} at {deployed.address}")


def _alias_version(model: str, env: str) -> int | None:
    from mlflow import MlflowClient

    served = _served_version(MlflowClient(), model, env)
    return int(served.version) if served is not None else None


def _served_version(client: Any, model: str, env: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, env)
    except MlflowException:
        return None
