"""Each module here adds one area's commands to the `modelyard` app."""

from __future__ import annotations

import typer
from modelyard.pipelines.commands import (
    cluster,
    configure,
    data,
    demo,
    deploy,
    env,
    hooks,
    infra,
    monitor,
    pipeline,
    promote,
    serve,
    train,
)


def register_all(app: typer.Typer) -> None:
    for module in (
        env,
        data,
        train,
        promote,
        infra,
        cluster,
        configure,
        serve,
        deploy,
        monitor,
        pipeline,
        demo,
        hooks,
    ):
        module.register(app)
