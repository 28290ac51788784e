"""`modelyard deploy ENV`: bring the environment's local serving up to date (blue/green)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)


def deploy_command(
    environment: Annotated[str, typer.Argument(help="Environment whose alias is served.")],
    port: Annotated[int | None, typer.Option(help="Override serving.localPort.")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the local server.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds the new server may take.")] = 120.0,
    replace: Annotated[
        bool, typer.Option("--replace", help="Start a new server even if up to date.")
    ] = False,
) -> None:
    """Serve the version the environment's alias points to on 127.0.0.1, blue/green."""
    from modelyard.pipelines import deploy as local_deploy

    if stop:
        stopped = local_deploy.stop(environment)
        typer.echo(f"{environment}: {'stopped' if stopped else 'no local server was running'}")
        return
    result = local_deploy.deploy(environment, port=port, timeout=timeout, replace=replace)
    typer.echo(f"{environment}: {result.message} at {result.url} (pid {result.pid})")
