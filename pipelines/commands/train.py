"""`modelyard train ENV --data PATH [--target COLUMN] [--model NAME] [--task TASK]`: validate,
tune until the gate passes, register, notify."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from modelyard.contracts.environment import load_environment, project_root
from modelyard.contracts.state import state_dir
from modelyard.contracts.tasks import Task
from modelyard.ml.errors import DataValidationError, GateNotMet
from modelyard.pipelines.commands.data import DataOption, JsonOption, TargetOption, print_report
from modelyard.pipelines.notify import notify
from modelyard.pipelines.process_exit import skip_teardown
from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def train_command(
    env: str,
    data: DataOption,
    target: TargetOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to train: a folder under ml/models (default: the environment's), or "
            "the name to register a dataset's own model under (with --target)."
        ),
    ] = None,
    task: Annotated[
        Task | None,
        typer.Option(
            help="binary, multiclass or regression, for a dataset's own model (default: "
            "inferred from the target)."
        ),
    ] = None,
    as_json: JsonOption = False,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Do not notify the team.")] = False,
) -> None:
    """Train a model; tune until the environment's gate for its task passes; register it; notify.

    A --target no model under ml/models predicts trains a model of the dataset's own (named by
    --model, or after the file), its task from --task or inferred from the target."""
    from modelyard.contracts.environment.lightgbm_params import check_training_params
    from modelyard.ml.spec import model_file
    from modelyard.ml.tracking import reachable_uri
    from modelyard.ml.training.choice import choose_model
    from modelyard.ml.training.mlflow_job import tracking_sidecar

    skip_teardown()  # it shuts its sidecar down and writes its files before it returns
    environment = load_environment(env)
    check_training_params(environment)  # before MLflow, the data and LightGBM's import
    spec = choose_model(environment.training.model, data, model, target)
    check_training_params(environment, (model_file(spec.name), spec.params))  # the model's own
    target = spec.target
    console = Console(stderr=True)

    def send(event: str, subject: str, payload: dict[str, object]) -> None:
        if no_notify:
            return
        for delivery in notify(environment, event, subject, payload):  # type: ignore[arg-type]
            colour = "green" if delivery.ok else "yellow"
            console.print(f"[{colour}]notify {delivery.channel}[/{colour}]: {delivery.detail}")

    uri = reachable_uri(environment.mlflow)
    # Started before pandas and LightGBM are imported and the data is read: MLflow loads meanwhile.
    with tracking_sidecar(uri) as sidecar:
        from modelyard.ml.training.lean_imports import import_lightgbm_alone

        import_lightgbm_alone()
        from modelyard.ml.data.dataset import read_dataset
        from modelyard.ml.training.choice import choose_task
        from modelyard.ml.training.run import TrainResult, train, training_settings
        from modelyard.ml.training.training_data import whole

        dataset = read_dataset(data)
        choice = choose_task(spec, dataset.frame, task)
        spec = spec.model_copy(update={"task": choice.task})
        console.print(
            f"training {spec.name} for {env} on {data} (version {dataset.short_digest}), "
            f"tracking {uri}"
        )
        console.print(f"task: {choice.task} ({choice.source}: {choice.reason})")
        try:
            held = whole(dataset, spec, target, training_settings(environment, spec))
            result = train(environment, spec, held, target, state_dir(), project_root(), sidecar,
                           say=console.print)  # fmt: skip
        except DataValidationError as exc:
            if exc.report is not None:
                print_report(exc.report, console)  # type: ignore[arg-type]
            send("failure", f"training {spec.name} rejected its data", {"reason": str(exc)})
            raise
        except GateNotMet as exc:
            send("failure", f"training {spec.name} did not pass its gate", {"reason": str(exc)})
            if as_json and isinstance(exc.result, TrainResult):
                typer.echo(json.dumps({**exc.result.to_json(), "task_source": choice.source,
                                       "task_reason": choice.reason}))  # fmt: skip
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(1) from None

    gate = result.gate
    subject = (
        f"the best model is ready: {spec.name} version {result.model_version}, "
        f"{gate['metric']} {gate['value']:.4f}"
    )
    answer = {**result.to_json(), "task_source": choice.source, "task_reason": choice.reason}
    send("success", subject, answer)
    if as_json:
        typer.echo(json.dumps(answer))
    else:
        console.print(f"[green]{subject}[/green] (gate `{gate['rule']}`, run {result.run_id})")
    sys.stdout.flush()
