"""`modelyard infra ...`: provision (Automation API), render, diff and police the Pulumi program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from modelyard.pipelines.errors import PipelineError

if TYPE_CHECKING:  # the Automation API loads only for the commands that use it
    from modelyard.infra.automation import Operation

OutputFormat = Literal["json", "yaml"]
DiffFormat = Literal["text", "json"]

group = typer.Typer(help="The Pulumi program: preview/up, offline render and diff, policy.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="infra")


# --- provisioning: the Automation API over the real Pulumi CLI ---

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the outputs and the engine's change summary as JSON.")
]
ShowSecrets = Annotated[
    bool, typer.Option("--show-secrets", help="Show secret outputs in plain text (with --json).")
]


def _provision(env: str, operation: Operation, as_json: bool, show_secrets: bool) -> None:
    from modelyard.infra.automation import run

    # With --json, the engine's progress goes to stderr and stdout holds one JSON document.
    result = run(env, operation, lambda line: typer.echo(line, err=as_json), show_secrets)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    for key, value in result.outputs.items():
        typer.echo(f"{key}: {value}")
    typer.echo(result.summary)


@group.command("preview")
def preview(
    env: Annotated[str, typer.Argument(help="Environment (stack) to preview.")],
    as_json: JsonFlag = False,
) -> None:
    """What `up` would change in an environment (the real engine; `make tools` builds it)."""
    _provision(env, "preview", as_json, show_secrets=False)


@group.command("up")
def up(
    env: Annotated[str, typer.Argument(help="Environment (stack) to provision.")],
    as_json: JsonFlag = False,
    show_secrets: ShowSecrets = False,
) -> None:
    """Provision an environment: its platform and serving, as its file says."""
    _provision(env, "up", as_json, show_secrets)


@group.command("refresh")
def refresh(
    env: Annotated[str, typer.Argument(help="Environment (stack) to refresh.")],
    as_json: JsonFlag = False,
    show_secrets: ShowSecrets = False,
) -> None:
    """Read what really runs into the stack's state (containers removed by hand, ...)."""
    _provision(env, "refresh", as_json, show_secrets)


@group.command("destroy")
def destroy(
    env: Annotated[str, typer.Argument(help="Environment (stack) to tear down.")],
    as_json: JsonFlag = False,
) -> None:
    """Remove everything the environment's stack created (its state and history stay)."""
    _provision(env, "destroy", as_json, show_secrets=False)


# --- offline auditors: render, diff, policy (mock runtime; no Pulumi state or credentials) ---


@group.command("render")
def render(
    env: Annotated[str, typer.Argument(help="Environment to render.")],
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = "yaml",
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write each Kubernetes object to DIR.")
    ] = None,
) -> None:
    """Print an environment's desired state: every resource's type, name, parent and inputs."""
    from modelyard.infra.render import render as render_state

    state = render_state(env)
    typer.echo(state.to_text(fmt))
    if out is not None:
        written = state.write_manifests(out)
        typer.echo(f"# {len(written)} Kubernetes manifest(s) written to {out}", err=True)


@group.command("diff")
def diff(
    env: Annotated[str, typer.Argument(help="Environment to compare.")],
    base: Annotated[str, typer.Option("--base", help="Git revision to compare against.")],
    fmt: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = "text",
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when the environment changes (for CI).")
    ] = False,
) -> None:
    """What the work tree changes in an environment since GITREV, resource by resource."""
    from modelyard.infra.diff import DiffError, diff_environment

    try:
        result = diff_environment(env, base)
    except DiffError as exc:
        raise PipelineError(str(exc)) from None
    text = json.dumps(result.as_dict(), indent=2) if fmt == "json" else result.to_text()
    typer.echo(text)
    if exit_code and result.changed:
        raise typer.Exit(1)


@group.command("policy")
def policy(env: Annotated[str, typer.Argument(help="Environment to check.")]) -> None:
    """Run the serving policy pack's rules on an environment's rendered desired state."""
    from modelyard.infra.policy.audit import check_environment

    violations = check_environment(env)
    for violation in violations:
        typer.echo(str(violation))
    if violations:
        raise PipelineError(f"{env}: {len(violations)} policy violation(s); fix them before `up`")
    typer.echo(f"{env}: every policy passes")
