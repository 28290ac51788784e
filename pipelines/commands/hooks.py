"""`modelyard hooks install`: run the local pipeline after every commit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

group = typer.Typer(help="Git hooks that start the pipeline.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="hooks")


@group.command("install")
def install_command(
    data: Annotated[Path, typer.Option("--data", help="Training data the pipeline runs on.")],
    env: Annotated[
        str, typer.Option("--env", help="Environment the pipeline runs with.")
    ] = "local",
    repo: Annotated[Path, typer.Option("--repo", help="Repository to install into.")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Replace a hook modelyard did not write.")
    ] = False,
) -> None:
    """Add a post-commit hook that starts `modelyard pipeline run` in the background."""
    from modelyard.contracts.environment import load_environment
    from modelyard.contracts.state import logs_dir
    from modelyard.pipelines.hooks import install_post_commit

    load_environment(env)  # refuse an environment that does not exist or does not validate
    hook = install_post_commit(repo.resolve(), env, data, logs_dir(), force)
    typer.echo(
        f"installed {hook}: each commit starts `modelyard pipeline run {env}` in the background"
    )
