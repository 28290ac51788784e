"""`modelyard configure ENV`: prepare the environment's hosts with Ansible, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from modelyard.pipelines.configure import ConfigureResult


def register(app: typer.Typer) -> None:
    app.command("configure")(configure_command)


def configure_command(
    env: Annotated[str, typer.Argument(help="Environment whose hosts to configure.")],
    check: Annotated[
        bool, typer.Option("--check", help="Show what would change; change nothing.")
    ] = False,
    limit: Annotated[
        str | None, typer.Option("--limit", help="Only hosts matching this pattern.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tags", help="Only tasks with this tag (repeatable).")
    ] = None,
    playbook: Annotated[
        str, typer.Option("--playbook", help="Playbook in ansible/playbooks.")
    ] = "site.yml",
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", help="Inventory (default: ansible/inventories/ENV)."),
    ] = None,
) -> None:
    """Run the Ansible playbooks against ENV's hosts; exit 1 if any host failed."""
    # Ansible loads when the command runs: the training image runs the CLI without it.
    from modelyard.pipelines.configure import configure

    console = Console()
    result = configure(
        env,
        check=check,
        limit=limit,
        tags=tags,
        inventory=inventory,
        playbook=playbook,
        on_event=lambda line: console.print(escape(line), highlight=False, soft_wrap=True),
    )
    _print_summary(console, result, check)
    if not result.succeeded:
        raise typer.Exit(1)


def _print_summary(console: Console, result: ConfigureResult, check: bool) -> None:
    table = Table(title="would change (check mode)" if check else None)
    for column in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host in result.hosts:
        style = None if host.healthy else "red"
        table.add_row(
            host.host,
            str(host.ok),
            str(host.changed),
            str(host.failed),
            str(host.unreachable),
            str(host.skipped),
            style=style,
        )
    if result.detail:
        console.print(escape(result.detail), highlight=False)
    console.print(table)
    console.print(f"ansible-runner artifacts: {result.artifacts}")
    if any(result.kubeconfig_dir.glob("*.yaml")):
        console.print(
            f"Kubernetes admin kubeconfigs for Pulumi's kubernetes provider: {result.kubeconfig_dir}"
        )
    verdict = "[green]configured[/green]" if result.succeeded else f"[red]{result.status}[/red]"
    console.print(f"{verdict} ({result.changed} change(s))")
