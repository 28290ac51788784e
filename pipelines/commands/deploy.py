"""`modelyard deploy ENV`: serve what the environment says.

`kubernetes`: `pulumi up` of the environment's stack, waiting for the rollout; a canary that
`modelyard promote` started is stepped through its canarySteps under analysis (the deploy stages
run the same). Otherwise a local server of the alias on 127.0.0.1, replaced blue/green when out
of date (for `docker`, `modelyard infra up ENV` replaces the container instead)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)


def deploy_command(
    environment: Annotated[str, typer.Argument(help="Environment to serve.")],
    port: Annotated[int | None, typer.Option(help="Override serving.localPort.")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the local server.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds a new local server may take.")] = 120.0,
    replace: Annotated[
        bool, typer.Option("--replace", help="Start a new local server even if up to date.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="Which served model (default: training.model; others: modelyard:models)."
        ),
    ] = None,
) -> None:
    """Serve the environment: on its cluster (kubernetes), else a local server of its alias."""
    from modelyard.contracts.environment import load_environment
    from modelyard.pipelines import deploy as local_deploy
    from modelyard.pipelines.deploy_targets import deploy_environment

    env = load_environment(environment)
    extra = local_deploy.other_model(env, model)
    if env.serving.platform == "kubernetes":
        if stop or port is not None or replace:
            raise typer.BadParameter(
                "--stop, --port and --replace are for local servers, not a Kubernetes environment"
            )
        deployed = deploy_environment(environment, typer.echo, extra)
        typer.echo(f"{environment}: {deployed.message} at {deployed.address}")
        return
    who = f"{environment} ({extra})" if extra else environment
    if stop:
        stopped = local_deploy.stop(environment, extra)
        typer.echo(f"{who}: {'stopped' if stopped else 'no local server was running'}")
        return
    result = local_deploy.deploy(
        environment, port=port, timeout=timeout, replace=replace, model=extra
    )
    typer.echo(f"{who}: {result.message} at {result.url} (pid {result.pid})")
