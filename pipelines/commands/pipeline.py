"""`modelyard pipeline run|stage|stages`: the Jenkinsfile's stages, locally or one at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from modelyard.contracts import variables
from rich.console import Console
from rich.table import Table

group = typer.Typer(help="The pipeline: every stage locally, or one stage (as Jenkins calls it).")
DataOption = Annotated[
    str,
    typer.Option(
        "--data",
        help="Training data (CSV or Parquet): a file, or a URI MLflow's artifact stores read "
        "(runs:/..., s3://...; `modelyard data push` makes one), which a training Job reads "
        "where it runs.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="pipeline")


@group.command("stages")
def stages_command() -> None:
    """List the stages in the order Jenkins and the local runner run them."""
    from modelyard.pipelines.pipeline.stages import STAGES

    for number, stage in enumerate(STAGES, 1):
        typer.echo(f"{number:2}. {stage.name:<20} {stage.summary}")


@group.command("stage")
def stage_command(
    name: Annotated[str, typer.Argument(help="Stage name (see `modelyard pipeline stages`).")],
    env: Annotated[str, typer.Argument(help="Environment whose settings the pipeline runs with.")],
    data: DataOption,
    run_id: Annotated[str | None, typer.Option(help="Pipeline run (Jenkins: BUILD_TAG).")] = None,
    approved_by: Annotated[
        list[str] | None,
        typer.Option("--approved-by", help="Approver (Jenkins' input step); repeatable."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model the run trains, given to its first stage (Jenkins: MODEL; empty or "
            "unset: training.model)."
        ),
    ] = None,
) -> None:
    """Run one stage; the run's context is kept between stages under the state folder."""
    from modelyard.ml.data.source import located
    from modelyard.pipelines.errors import PipelineError
    from modelyard.pipelines.pipeline.context import PipelineContext, current_run_id
    from modelyard.pipelines.pipeline.runner import run_stage

    run_id = run_id or current_run_id()
    if not run_id:
        raise PipelineError(
            f"no pipeline run: pass --run-id or set {variables.PIPELINE_RUN_ID} (Jenkins sets BUILD_TAG)"
        )
    os.environ[variables.PIPELINE_RUN_ID] = run_id
    ctx = PipelineContext.load_or_start(run_id, env, located(data))
    ctx.use_model(model)
    if approved_by:
        ctx.approvers = list(approved_by)
    run_stage(name, ctx, lambda line: typer.echo(line))


@group.command("failed")
def failed_command(
    env: Annotated[str, typer.Argument(help="Environment the pipeline runs with.")],
    data: DataOption,
    stage: Annotated[str, typer.Option(help="The stage that failed (Jenkins: STAGE_NAME).")],
    run_id: Annotated[str | None, typer.Option(help="Pipeline run (Jenkins: BUILD_TAG).")] = None,
) -> None:
    """After a failed stage: roll back a failed deploy and notify the team (Jenkins' post step)."""
    from modelyard.contracts.environment import load_environment
    from modelyard.ml.data.source import located
    from modelyard.pipelines.pipeline.context import PipelineContext, current_run_id
    from modelyard.pipelines.pipeline.runner import after_failure
    from modelyard.pipelines.pipeline.stages import stage_named

    ctx = PipelineContext.load_or_start(run_id or current_run_id() or "manual", env, located(data))
    after_failure(
        ctx, load_environment(env), stage_named(stage), f"stage {stage} failed", typer.echo
    )


@group.command("run")
def run_command(
    env: Annotated[str, typer.Argument(help="Environment whose settings the pipeline runs with.")],
    data: DataOption,
    run_id: Annotated[str | None, typer.Option(help="Resume this pipeline run.")] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Stop after this stage; the same --run-id continues from there."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's context as JSON.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            help="Why this run starts (kept on the version it registers, and shown in "
            "the promotion history); Jenkins passes its REASON parameter."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to train and promote: a folder under ml/models that the environments "
            "serve (default: training.model)."
        ),
    ] = None,
    changed_since: Annotated[
        str | None,
        typer.Option(
            help="Train and promote each model the change since this commit touches, each in a "
            "run of its own; --data is then a folder of MODEL.parquet or MODEL.csv files. "
            "--json prints a list of the runs' contexts."
        ),
    ] = None,
) -> None:
    """Run every stage in the Jenkinsfile's order on this machine, with timings and a summary."""
    if reason:
        os.environ[variables.PIPELINE_REASON] = reason
    from dataclasses import asdict

    from modelyard.pipelines.pipeline.runner import run_changed, run_pipeline
    from modelyard.pipelines.pipeline.stages import STAGES

    if model is not None and changed_since is not None:
        raise typer.BadParameter("name a model or a change, not both", param_hint="--model")

    console = Console(stderr=as_json)
    timings: list[tuple[str, str, float]] = []

    def on_stage(name: str, status: str, seconds: float) -> None:
        if status == "running":
            console.rule(f"[bold]{name}")
            return
        timings.append((name, status, seconds))
        colour = "green" if status == "passed" else "red"
        console.print(f"[{colour}]{status}[/{colour}] {name} in {seconds:.1f} s")

    def say(line: str) -> None:
        console.print(f"  {line}", highlight=False)

    try:
        if changed_since is not None:
            runs = run_changed(env, Path(data), changed_since, say, on_stage, run_id, until)
        else:
            runs = [run_pipeline(env, data, say, on_stage, run_id, until, model)]
    finally:
        print_summary(console, timings)
    if until is not None and until != STAGES[-1].name and runs:
        again = f"--run-id {runs[0].run_id}"
        if changed_since is not None:  # each model's run is BASE-MODEL
            base = runs[0].run_id.removesuffix(f"-{runs[0].model}")
            again = f"--changed-since {changed_since} --run-id {base}"
        console.print(f"stopped after {until}; continue with: modelyard pipeline run {env} "
                      f"--data {data} {again}")  # fmt: skip
    if as_json:
        contexts = [asdict(ctx) for ctx in runs]
        typer.echo(json.dumps(contexts if changed_since is not None else contexts[0]))
    for ctx in runs:
        for note in ctx.notes:
            console.print(f"[yellow]note[/yellow]: {note}")


@group.command("changed")
def changed_command(
    env: Annotated[str, typer.Argument(help="Environment whose settings the pipeline runs with.")],
    since: Annotated[
        str,
        typer.Option(
            help="Commit the change starts from (Jenkins: GIT_PREVIOUS_SUCCESSFUL_COMMIT)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="A folder of MODEL.parquet or MODEL.csv: print each model's file too."),
    ] = None,
    others: Annotated[
        bool,
        typer.Option(
            "--others",
            help="Leave out ENV's training.model, the model a build without MODEL trains itself.",
        ),
    ] = False,
    kind: Annotated[
        bool,
        typer.Option(
            "--kind",
            help="Print what the commits since ask a build for: `releases` (each one a release "
            "commit modelyard pushed: nothing), `deploy` (environment files alone: deploy, don't "
            "train) or `train` (the whole pipeline).",
        ),
    ] = False,
) -> None:
    """Print each model the change touches and staging serves, one per line (with its data file
    after a space when --data is given): what `pipeline run --changed-since` trains, and the
    builds a Jenkins push build starts, one per model."""
    from modelyard.contracts.environment import load_environment
    from modelyard.pipelines.errors import PipelineError
    from modelyard.pipelines.pipeline.runner import data_of, models_to_train

    def say(line: str) -> None:  # stdout holds only the list
        typer.echo(line, err=True)

    if kind:
        from modelyard.contracts.environment import project_root
        from modelyard.pipelines.pipeline.changes import build_kind

        typer.echo(build_kind(project_root(), since))
        return
    if data is not None and not data.is_dir():  # a file would be taken as every model's data
        raise PipelineError(
            f"--data {data} is not a folder: pass the folder holding each model's "
            "MODEL.parquet or MODEL.csv"
        )
    models = models_to_train(since, say)
    if others:
        default = load_environment(env).training.model
        models = [name for name in models if name != default]
    for name in models:
        typer.echo(name if data is None else f"{name} {data_of(data, name, models)}")


def print_summary(console: Console, timings: list[tuple[str, str, float]]) -> None:
    if not timings:
        return
    table = Table(title="pipeline summary", title_justify="left")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for name, status, seconds in timings:
        table.add_row(name, status, f"{seconds:.1f}")
    table.add_row("total", "", f"{sum(t[2] for t in timings):.1f}")
    console.print(table)
