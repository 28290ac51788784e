"""`modelyard demo` (what `make demo` runs): the whole loop on this machine."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="Leave MLflow and the model servers running.")
    ] = False,
) -> None:
    """Sample data, gate loop, registry, staging, production, drift, history: on this machine."""
    from modelyard.pipelines.demo import print_addresses, run_demo

    console = Console()
    outcome = run_demo(keep_serving, console)
    print_addresses(outcome, keep_serving, console)
