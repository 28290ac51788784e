"""`modelyard infra ...`: provision (Automation API), render, diff and police the Pulumi program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from modelyard.pipelines.errors import PipelineError

OutputFormat = Literal["json", "yaml"]
DiffFormat = Literal["text", "json"]

group = typer.Typer(help="The Pulumi program: preview/up, offline render and diff, policy.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="infra")


# --- provisioning: the Automation API over the real Pulumi CLI ---


@group.command("preview")
def preview(env: Annotated[str, typer.Argument(help="Environment (stack) to preview.")]) -> None:
    """What `up` would change in an environment (needs the Pulumi CLI)."""
    from modelyard.infra.automation import preview as run_preview

    typer.echo(run_preview(env, on_output=typer.echo).summary)


@group.command("up")
def up(env: Annotated[str, typer.Argument(help="Environment (stack) to provision.")]) -> None:
    """Provision an environment: its platform and serving, as its file says (needs the CLI)."""
    from modelyard.infra.automation import up as run_up

    result = run_up(env, on_output=typer.echo)
    for key, value in sorted(result.outputs.items()):
        typer.echo(f"{key}: {value}")
    typer.echo(result.summary)


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
