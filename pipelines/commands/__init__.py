"""Each module here adds one area's commands to the `modelyard` app."""

from __future__ import annotations

import typer

from pipelines.commands import env


def register_all(app: typer.Typer) -> None:
    for module in (env,):
        module.register(app)
