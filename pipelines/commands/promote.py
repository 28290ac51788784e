"""`modelyard promote`, `rollback` and `history`: thin over pipelines.promotion."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from modelyard.contracts.versions import shown_version
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from modelyard.pipelines.promotion import Outcome

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
Approvers = Annotated[
    list[str] | None,
    typer.Option("--approved-by", help="An approver's name; repeat for each approver."),
]


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)
    app.command("rollback")(rollback_command)
    app.command("history")(history_command)


def promote_command(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    to: Annotated[str, typer.Option("--to", help="Environment to promote into.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Version (default: what the source serves).")
    ] = None,
    approved_by: Approvers = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Serving image REPO:TAG@sha256:... to record.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Evaluate; change nothing.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate ENV's rules for a model version and, if all pass, make ENV serve it."""
    from modelyard.pipelines.promotion import (
        promote,  # MLflow loads only for the commands that use it
    )

    outcome = promote(model, to, version, approved_by or [], dry_run=dry_run, image=image)
    _report(outcome, as_json)
    if not outcome.promoted and not (dry_run and all(g.passed for g in outcome.gates)):
        raise typer.Exit(1)


def rollback_command(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    env: Annotated[str, typer.Option("--env", help="Environment to roll back.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the record.")],
    to_version: Annotated[
        str | None, typer.Option("--to-version", help="Version (default: the previous one).")
    ] = None,
    approved_by: Approvers = None,
    as_json: JsonFlag = False,
) -> None:
    """Serve the previous (or named) version again; allowed in a freeze; recorded."""
    from modelyard.pipelines.promotion import rollback

    _report(rollback(model, env, to_version, reason, approved_by or []), as_json)


def history_command(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    at: Annotated[
        datetime | None,
        typer.Option("--at", help="With --env: what served at this UTC time, and why."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every promotion and rollback that took effect, oldest first."""
    from modelyard.pipelines.promotion import history, served_at

    if at is not None:
        if env is None:
            raise typer.BadParameter("--at needs --env: name the environment to look at.")
        _report_served_at(model, env, at, served_at(model, env, at), as_json)
        return
    records = history(model, env)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    print_history(records, Console())


def _report_served_at(
    model: str, env: str, at: datetime, record: dict[str, Any] | None, as_json: bool
) -> None:
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    console = Console()
    if record is None:
        console.print(f"{env} served no version of {model} at {at:%Y-%m-%d %H:%M} UTC.")
        return
    console.print(
        f"at {at:%Y-%m-%d %H:%M} UTC {env} served {model} {shown_version(record['to_version'])}, since "
        f"{record['at']} by {record['action']} (record {record['id']}, "
        f"commit {record.get('commit') or 'none'}, by {record['actor']}, "
        f"approved by {', '.join(record.get('approvers') or []) or 'nobody'})"
        + (f"; reason: {record['reason']}" if record.get("reason") else "")
    )
    table = Table(title="why: the rules and their evidence at that promotion")
    for column in ("gate", "result", "evidence"):
        table.add_column(column, overflow="fold")
    for gate in record.get("gates") or []:
        table.add_row(gate["name"], "pass" if gate["passed"] else "FAIL", gate["evidence"])
    console.print(table)


def _report(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(outcome.as_dict(), indent=2))
        return
    console = Console()
    for note in outcome.notes:
        console.print(f"[yellow]{note}[/yellow]")
    blocking = outcome.action == "promote"
    title = f"{outcome.action} {outcome.model} {shown_version(outcome.version)} in {outcome.env}"
    table = Table(title=title + ("" if blocking else " (gates reported, not blocking)"))
    table.add_column("gate")
    table.add_column("result")
    table.add_column("evidence", overflow="fold")
    for gate in outcome.gates:
        mark = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        table.add_row(gate.name, mark, gate.evidence)
    console.print(table)
    if outcome.dry_run:
        verdict = "would pass" if all(g.passed for g in outcome.gates) else "would be refused"
        console.print(f"dry run: v{outcome.version} {verdict}; nothing was changed.")
    elif outcome.promoted:
        console.print(
            f"[green]{outcome.env} now serves {outcome.model} {shown_version(outcome.version)}[/green] "
            f"(was {shown_version(outcome.from_version)}); record {outcome.record_id}"
            + (f", commit {outcome.commit[:12]} pushed." if outcome.commit else ".")
        )
        for change in (outcome.file_change or {}).get("changes", []):
            console.print(f"  {change['key']}: {change['from']} -> {change['to']}")
    else:
        console.print(f"[red]refused[/red]: a gate failed; {outcome.env} was not changed.")


def _versions(record: dict[str, Any]) -> str:
    return (
        f"{shown_version(record.get('from_version'))} -> {shown_version(record.get('to_version'))}"
    )


def print_history(records: list[dict[str, Any]], console: Console) -> None:
    """Two lines per record, so an 80-column terminal shows every field whole: what changed,
    where, by whom and in which commit; then its approvers, data and rules (`--json`: all)."""
    console.print("[bold]promotion history[/bold] (oldest first; `--json` for every field)")
    for record in records:
        gates = record.get("gates") or []
        failed = [g["name"] for g in gates if not g.get("passed")]
        summary = f"{len(gates) - len(failed)}/{len(gates)} passed"
        if failed:
            summary += f"; failed: {', '.join(failed)}"
        when = str(record.get("at", ""))[:16].replace("T", " ")
        commit = str(record.get("commit") or "")[:8] or "no commit"
        head = Text.assemble(
            (when, "bold"), "  ", (str(record.get("env")), "cyan"), "  ",
            f"{record.get('action')} {_versions(record)}", "  ", ("commit " + commit, "yellow"),
        )  # fmt: skip
        console.print(head, overflow="fold")
        details = [
            f"by {record.get('actor')}",
            f"approved by {', '.join(record.get('approvers') or []) or 'nobody'}",
            f"data {str(record.get('dataset_digest') or '?')[:8]}",
            f"gates {summary}",
        ]
        if record.get("reason"):
            details.append(f"reason: {record['reason']}")
        if record.get("trigger"):
            details.append(f"trained after: {record['trigger']}")
        details += ["repaired"] if record.get("repair") else []
        details += ["run deleted in MLflow"] if record.get("deleted_in_mlflow") else []
        console.print(Padding("; ".join(details), (0, 0, 0, 4)), overflow="fold")
    if not records:
        console.print("no promotion on record.")
