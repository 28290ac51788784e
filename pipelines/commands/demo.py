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
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="The production path: platform by `pulumi up` in Docker, staging and production "
            "on the local Kubernetes (`make tools cluster-tools` first).",
        ),
    ] = False,
) -> None:
    """Sample data, gate loop, registry, staging, production, drift, history: on this machine."""
    console = Console()
    if cluster:
        from modelyard.pipelines.cluster_demo import run_cluster_demo

        run_cluster_demo(keep_serving, console)
        return
    from modelyard.pipelines.demo import print_addresses, run_demo

    outcome = run_demo(keep_serving, console)
    print_addresses(outcome, keep_serving, console)
