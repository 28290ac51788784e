"""`modelyard infra ...`: provision (Automation API), render, diff and police the Pulumi program."""

from __future__ import annotations

import typer

group = typer.Typer(help="The Pulumi program: preview/up, offline render and diff, policy.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="infra")
