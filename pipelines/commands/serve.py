"""`modelyard serve`: run the model server in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import PipelineError

EnvArg = Annotated[
    str | None, typer.Argument(help="Serve what this environment's alias points to, and follow it.")
]
UriOpt = Annotated[
    str | None,
    typer.Option("--model-uri", help="models:/NAME@ALIAS, models:/NAME/V, runs:/... or a folder."),
]
PortOpt = Annotated[
    int | None, typer.Option(help="Port (default: the environment's serving.localPort, else 8080).")
]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    environment: EnvArg = None,
    model_uri: UriOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: PortOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
    state_dir: Annotated[Path | None, typer.Option(help="Routing, metrics, samples.")] = None,
    poll_seconds: Annotated[float, typer.Option(help="How often to check the alias.")] = 10.0,
    model: Annotated[
        str | None,
        typer.Option(help="With an environment: which served model (default: training.model)."),
    ] = None,
) -> None:
    """Serve a LightGBM model over MLflow's scoring protocol (+ /health, /version, /metrics)."""
    from modelyard.ml.serving.supervisor import ServeOptions, Supervisor
    from modelyard.pipelines.deploy import serve_options, use_tracking_of

    if (environment is None) == (model_uri is None):
        raise PipelineError(
            "give either an environment (modelyard serve staging) or --model-uri URI, not both"
        )
    if model is not None and environment is None:
        raise PipelineError("--model names one of an environment's models: give the environment")
    if environment is not None:
        env = load_environment(environment)
        use_tracking_of(env)
        options = serve_options(
            env, model_uri=None, host=host, port=port, state=state_dir, workers=workers,
            poll_seconds=poll_seconds, model=model,
        )  # fmt: skip
    else:
        assert model_uri is not None
        options = ServeOptions(
            model_uri=model_uri, host=host, port=port or 8080, workers=workers,
            state_dir=state_dir or Path(".modelyard/serving/adhoc"), poll_seconds=poll_seconds,
        )  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    typer.echo(
        f"serving {options.model_uri} on http://{options.host}:{options.port} "
        f"({options.workers} workers; Ctrl-C stops)"
    )
    Supervisor(options).run()
