"""`modelyard pipeline run`: every stage in the Jenkinsfile's order on this machine, with the
monitor the source documents ask for: a training or serving process that dies is started again
and training resumes from its last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelyard.contracts import tags, variables
from modelyard.contracts.environment import ConfigError, load_environment
from modelyard.ml.data.source import located
from modelyard.ml.errors import ModelyardMlError
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.pipeline.stages import (
    PRODUCTION,
    STAGES,
    STAGING,
    Stage,
    rollback_after_failed_deploy,
)

Say = Callable[[str], None]
StageHook = Callable[[str, str, float], None]  # stage name, status, seconds
FAILURES = (PipelineError, ConfigError, ModelyardMlError)


def run_stage(name: str, ctx: PipelineContext, say: Say) -> None:
    """One stage in this process (what `modelyard pipeline stage NAME` and Jenkins run)."""
    from modelyard.pipelines.pipeline.stages import stage_named

    stage = stage_named(name)
    environment = load_environment(ctx.env)
    # A stage run on its own, before any checkout, trains the environment's model.
    ctx.model = ctx.model or environment.training.model
    try:
        stage.run(ctx, environment, say)
    finally:
        ctx.save()


def run_pipeline(
    env: str,
    data: Path | str,
    say: Say,
    on_stage: StageHook,
    run_id: str | None = None,
    until: str | None = None,
    model: str | None = None,
) -> PipelineContext:
    """Every stage in order, or up to and including `until` (the same run id continues it).
    `model`: the model to train and promote (default: the environment's training.model)."""
    from modelyard.pipelines.pipeline.stages import stage_named

    if until is not None:
        stage_named(until)  # an unknown name fails before anything runs
    environment = load_environment(env)
    run_id = run_id or f"local-{time.strftime('%Y%m%d-%H%M%S')}"
    os.environ[variables.PIPELINE_RUN_ID] = run_id  # tags every MLflow run this pipeline makes
    ctx = PipelineContext.load_or_start(run_id, env, located(str(data)))
    ctx.use_model(model)
    for stage in STAGES:
        if ctx.stages.get(stage.name, {}).get("status") == "passed":
            continue  # a re-run of the same pipeline run picks up where it stopped
        on_stage(stage.name, "running", 0.0)
        started = time.monotonic()
        try:
            if stage.supervised:
                supervise(stage, ctx, environment.pipeline.max_restarts, say)
            else:
                _ensure_serving(ctx, stage, environment.pipeline.max_restarts, say)
                run_stage(stage.name, ctx, say)
        except FAILURES as exc:
            seconds = time.monotonic() - started
            ctx.stages[stage.name] = {"status": "failed", "seconds": round(seconds, 1)}
            ctx.save()
            on_stage(stage.name, "failed", seconds)
            after_failure(ctx, environment, stage, str(exc), say)
            raise PipelineError(f"stage {stage.name} failed: {exc}") from None
        seconds = time.monotonic() - started
        ctx.stages[stage.name] = {"status": "passed", "seconds": round(seconds, 1)}
        ctx.save()
        on_stage(stage.name, "passed", seconds)
        if stage.name == until:
            break
    return ctx


def models_to_train(since: str, say: Say) -> list[str]:
    """The models the change since commit `since` touches and staging serves: what `pipeline
    run --changed-since` trains, and what `pipeline changed` lists for Jenkins. Says which
    changed models staging does not serve."""
    from modelyard.contracts.environment import project_root
    from modelyard.ml.spec import known_models
    from modelyard.pipelines.pipeline.changes import changed_paths, touched_models

    touched = touched_models(changed_paths(project_root(), since), known_models())
    served = load_environment(STAGING).served_models
    for name in touched:
        if name not in served:
            say(f"{name} changed, but {STAGING} does not serve it (modelyard:models): not trained")
    models = [name for name in touched if name in served]
    if models:
        say(f"changed since {since}: {', '.join(models)}")
    else:
        say(f"no model {STAGING} serves changed since {since}: nothing to train")
    return models


def run_changed(
    env: str,
    data: Path,
    since: str,
    say: Say,
    on_stage: StageHook,
    run_id: str | None = None,
    until: str | None = None,
) -> list[PipelineContext]:
    """A pipeline run for each model of `models_to_train`, one after another, each as its own
    run (`RUN_ID-MODEL`: the same `run_id` continues them). `data` is a folder holding each
    model's MODEL.parquet or MODEL.csv (or, when one model is touched, its file). A model's
    failure does not stop the others; the error names each one that failed."""
    models = models_to_train(since, say)
    if not models:
        return []
    base = run_id or f"local-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = {name: data_of(data, name, models) for name in models}  # all found before any runs
    done, failed = [], []
    for name in models:
        say(f"model {name}")
        try:
            done.append(
                run_pipeline(env, paths[name], say, on_stage, f"{base}-{name}", until, name)
            )
        except FAILURES as exc:
            failed.append(f"{name}: {exc}")
    if failed:
        passed = ", ".join(ctx.model for ctx in done) or "none"
        raise PipelineError(f"{'; '.join(failed)} (passed: {passed})")
    return done


def data_of(data: Path, model: str, models: list[str]) -> Path:
    """`model`'s training data: MODEL.parquet or MODEL.csv in the folder `data`, or the file
    `data` when it is the only model."""
    if data.is_file() and len(models) == 1:
        return data
    if not data.is_dir():
        raise PipelineError(
            f"--data {data} is not a folder, and the change touches {', '.join(models)}: pass a "
            "folder holding MODEL.parquet or MODEL.csv for each"
        )
    for suffix in (".parquet", ".csv"):
        if (data / f"{model}{suffix}").is_file():
            return data / f"{model}{suffix}"
    raise PipelineError(
        f"--data {data} holds no {model}.parquet or {model}.csv, and the change touches {model}: "
        "add its training data there"
    )


def supervise(stage: Stage, ctx: PipelineContext, max_restarts: int, say: Say) -> None:
    """Run the stage as a child process; if a signal kills it, start it again (it resumes)."""
    command = [str(Path(sys.executable).with_name("modelyard")), "pipeline", "stage", stage.name,
               ctx.env, "--data", ctx.data, "--run-id", ctx.run_id]  # fmt: skip
    restarts = ctx.restarts.get(stage.name, 0)
    while True:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        (ctx.folder / f"{stage.name}.pid").write_text(str(process.pid))
        assert process.stdout is not None
        for line in process.stdout:
            say(line.rstrip())
        code = process.wait()
        if code == 0:
            break
        killer = _killed_by(code)
        if killer is None:  # the stage itself failed: its own message says why
            raise PipelineError(f"{stage.name} exited with code {code}")
        if restarts >= max_restarts:
            raise PipelineError(
                f"{stage.name} was killed ({killer}) {restarts + 1} times; giving up"
            )
        restarts += 1
        ctx.restarts[stage.name] = restarts
        ctx.notes.append(f"{stage.name} killed by {killer}; restarted (resumed from checkpoint)")
        ctx.save()
        say(
            f"monitor: {stage.name} died ({killer}); restart {restarts}/{max_restarts}, resuming from its last checkpoint"
        )
    loaded = PipelineContext.load_or_start(ctx.run_id, ctx.env, ctx.data)  # the child's results
    for name in ("training_run_id", "metrics", "version"):
        setattr(ctx, name, getattr(loaded, name))
    if restarts and ctx.training_run_id:
        _tag_restarts(ctx, restarts)


def _killed_by(code: int) -> str | None:
    """The signal that ended a stage: the process's own, or its container's (exit 128 + N)."""
    number = -code if code < 0 else code - 128
    return signal.Signals(number).name if number in signal.valid_signals() else None


def _tag_restarts(ctx: PipelineContext, restarts: int) -> None:
    import mlflow

    assert ctx.training_run_id is not None
    from modelyard.ml.tracking import connect

    connect(load_environment(ctx.env).mlflow)
    mlflow.MlflowClient().set_tag(ctx.training_run_id, tags.MONITOR_RESTARTS, str(restarts))


def _ensure_serving(ctx: PipelineContext, stage: Stage, max_restarts: int, say: Say) -> None:
    """Before a stage that talks to a server, make sure the server deployed earlier still runs."""
    from modelyard.pipelines.deploy import deploy, other_model, status

    needs = {"smoke-test": STAGING, "promote-production": STAGING, "notify": PRODUCTION}.get(
        stage.name
    )
    if needs is None or needs not in ctx.serving:
        return
    if load_environment(needs).serving.platform != "process":
        return  # pods and containers are restarted by their platform, not by this runner
    extra = other_model(load_environment(needs), ctx.model)
    if status(needs, extra) is not None:
        return
    key = f"serving-{needs}"
    restarts = ctx.restarts.get(key, 0)
    if restarts >= max_restarts:
        raise PipelineError(f"{needs} serving died {restarts + 1} times; giving up")
    ctx.restarts[key] = restarts + 1
    ctx.notes.append(f"{needs} serving process died; restarted")
    say(f"monitor: the {needs} serving process is gone; starting it again")
    ctx.serving[needs] = deploy(needs, model=extra).url
    ctx.save()


def after_failure(
    ctx: PipelineContext, environment: object, stage: Stage, reason: str, say: Say
) -> None:
    """Roll back a deploy that failed after its promotion took effect; tell the team."""
    from modelyard.pipelines.notify import notify

    target = {
        "deploy-staging": STAGING,
        "smoke-test": STAGING,
        "deploy-production": PRODUCTION,
    }.get(stage.name)
    if target is not None:
        try:
            rollback_after_failed_deploy(
                ctx, target, f"pipeline {ctx.run_id}: {stage.name} failed", say
            )
        except FAILURES as exc:  # the original failure stays the one reported
            say(f"could not roll {target} back: {exc}")
    ctx.save()
    for delivery in notify(environment, "failure", f"pipeline {ctx.run_id} failed at {stage.name}",  # type: ignore[arg-type]
                           {"stage": stage.name, "reason": reason, "version": ctx.version}):  # fmt: skip
        say(f"notify {delivery.channel}: {'sent' if delivery.ok else 'FAILED'}")
