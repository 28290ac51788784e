"""`modelyard data validate|push|fetch|sample`: check a dataset before training, put it where a
cluster reads it and get it back, or write the sample one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from modelyard.contracts.environment import Environment, load_environment
from modelyard.contracts.tasks import Task
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # pandas and friends load only when a command needs them
    from modelyard.ml.data.dataset import Dataset
    from modelyard.ml.data.validation import ValidationReport

DataOption = Annotated[Path, typer.Option("--data", help="CSV or Parquet file.")]
TargetOption = Annotated[
    str | None, typer.Option("--target", help="Label column (default: the model's target).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Datasets: validate before training, push where training Jobs read them, write "
        "the sample data."
    )
    group.command("validate")(validate)
    group.command("push")(push)
    group.command("fetch")(fetch)
    group.command("sample")(sample)
    app.add_typer(group, name="data")


ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model: a folder under ml/models (default: the environment's), or a dataset's own "
        "model's name (with --target)."
    ),
]
TaskOption = Annotated[
    Task | None,
    typer.Option(
        help="binary, multiclass or regression, for a dataset's own model (default: inferred "
        "from the target)."
    ),
]


def validate(
    env: str,
    data: DataOption,
    target: TargetOption = None,
    model: ModelOption = None,
    task: TaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a dataset against the schema its model declares, and its target against the task."""
    _, _, report = _validated(env, data, target, model, task, say_task=not as_json)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        print_report(report)
    if not report.passed:
        raise typer.Exit(1)


def _validated(
    env: str, data: Path, target: str | None, model: str | None, task: Task | None,
    say_task: bool,
) -> tuple[Environment, Dataset, ValidationReport]:  # fmt: skip
    """What `data validate` checks: the file against its model's schema and task."""
    from modelyard.ml.data.dataset import read_dataset
    from modelyard.ml.data.validation import validate_dataset
    from modelyard.ml.training.choice import choose_model, choose_task

    environment = load_environment(env)
    spec = choose_model(environment.training.model, data, model, target)
    dataset = read_dataset(data)
    choice = choose_task(spec, dataset.frame, task)
    if say_task:
        Console(stderr=True).print(f"task: {choice.task} ({choice.source}: {choice.reason})")
    return environment, dataset, validate_dataset(dataset, spec.target, spec.data_schema,
                                                  choice.task)  # fmt: skip


def push(
    env: str,
    data: DataOption,
    target: TargetOption = None,
    model: ModelOption = None,
    task: TaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a dataset as `data validate` does, then put it in the environment's MLflow (its
    artifact store) and print its runs:/ URI: `pipeline run ENV --data URI` then trains on it
    where the training runs (a Job's pods fetch it; this machine need not keep it)."""
    from modelyard.ml.data import publish
    from modelyard.ml.tracking import connect

    environment, dataset, report = _validated(env, data, target, model, task, say_task=False)
    if not report.passed:
        print_report(report)
        Console(stderr=True).print("[red]not pushed[/red]")
        raise typer.Exit(1)
    server = connect(environment.mlflow)
    pushed = publish.push(data, dataset.digest, report.rows)
    if as_json:
        typer.echo(json.dumps({"uri": pushed.uri, "run_id": pushed.run_id, "new": pushed.new,
                               "digest": dataset.digest, "rows": report.rows}))  # fmt: skip
        return
    what = "pushed" if pushed.new else "already there (same content)"
    Console(stderr=True).print(
        f"{data}: {report.rows} rows, version {dataset.short_digest}, {what} in {server}; "
        f"train on it with `modelyard pipeline run {env} --data {pushed.uri}`",
        highlight=False,
    )
    typer.echo(pushed.uri)


def fetch(
    env: str,
    data: Annotated[str, typer.Option("--data", help="The URI (runs:/..., s3://...).")],
) -> None:
    """Copy a --data URI into the state folder, once per pipeline run, and print the copy's path:
    what a training Job's pods run before they train."""
    from modelyard.contracts.state import state_dir
    from modelyard.ml.data import source

    copy = source.local_file(data, state_dir(), load_environment(env).mlflow)
    Console(stderr=True).print(
        f"{data}: {copy.stat().st_size / 2**20:.1f} MiB at {copy}", highlight=False
    )
    typer.echo(str(copy))


def print_report(report: ValidationReport, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    what = (
        "schema and generic checks"
        if report.schema_checked
        else "generic checks (no schema declared)"
    )
    head = (
        f"{report.path}: {report.rows} rows, {report.columns} columns, version {report.digest[:12]}"
    )
    if report.passed:
        console.print(f"[green]valid[/green] {head} ({what})")
        return
    table = Table(title=f"{head}: {len(report.problems)} problem(s)", title_justify="left")
    table.add_column("column")
    table.add_column("problem")
    for problem in report.problems:
        table.add_row(problem.column, problem.problem)
    console.print(table)
    console.print("[red]rejected[/red]: nothing will be trained from this file.")


def sample(
    out: Annotated[Path, typer.Option("--out", help="Where to write (.csv or .parquet).")],
    model: Annotated[
        str,
        typer.Option(
            help="Sample model: churn (binary), segment (multiclass), demand (regression)."
        ),
    ] = "churn",
    rows: Annotated[int, typer.Option(min=1)] = 20_000,
    seed: int = 0,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 = training population.")] = 0.0,
) -> None:
    """Write a sample model's deterministic data (nothing is downloaded)."""
    from modelyard.ml.data.sample import SAMPLES

    if model not in SAMPLES:
        raise typer.BadParameter(f"no sample data for {model!r}; samples: {', '.join(SAMPLES)}",
                                 param_hint="--model")  # fmt: skip
    frame = SAMPLES[model](rows, seed=seed, drift=drift)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    typer.echo(f"wrote {len(frame)} rows to {out}")
