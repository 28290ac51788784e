"""`modelyard env validate|show`: check environment files and print their resolved settings."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml
from modelyard.contracts.environment import (
    ConfigError,
    check_cross_section,
    list_environments,
    load_environment,
)
from rich.console import Console


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Check and show environment files (environments/Pulumi.ENV.yaml).")
    group.command("validate")(validate)
    group.command("show")(show)
    app.add_typer(group, name="env")


def validate(
    env: Annotated[
        str | None, typer.Argument(help="Environment to check; all when omitted.")
    ] = None,
) -> None:
    """Check one environment file, or all of them."""
    from modelyard.contracts.environment.lightgbm_params import check_training_params

    names = [env] if env else list_environments()
    console = Console()
    problems: list[str] = []
    for name in names:
        try:
            environment = load_environment(name)
            check_cross_section(environment)  # what `pulumi up` would refuse later
            check_training_params(environment)  # LightGBM's verdict on training.params
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        console.print(f"[green]ok[/green] {name} ({environment.path})")
    if problems:
        raise ConfigError("\n".join(problems))


def show(env: Annotated[str, typer.Argument(help="Environment to show.")]) -> None:
    """Print an environment's resolved settings (defaults filled in, secrets masked)."""
    environment = load_environment(env)
    settings = environment.model_dump(mode="json", by_alias=True)
    typer.echo(f"# {environment.path}")
    typer.echo(yaml.safe_dump({f"modelyard:{k}": v for k, v in settings.items()}, sort_keys=False))
