"""`modelyard cluster up|down|status`: the single-node Kubernetes on this machine
(infra/local_cluster; `make cluster-tools` builds it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from modelyard.infra.local_cluster.runtime import Status

group = typer.Typer(help="The local Kubernetes the cluster path deploys to.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the cluster's state as JSON.")]


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="cluster")


def _show(status: Status, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status.as_dict(), indent=2))
        return
    typer.echo(f"cluster: {status.state} (Kubernetes {status.kubernetes_version})")
    for name, component in status.components.items():
        health = (
            "healthy" if component["healthy"] else ("unhealthy" if component["pid"] else "stopped")
        )
        pid = f"pid {component['pid']}" if component["pid"] else ""
        typer.echo(f"  {name:<24} {health:<10} {pid}")
    for node in status.nodes if len(status.nodes) > 1 else []:
        health = "Ready" if node["ready"] else "not ready"
        typer.echo(f"  {node['name']:<6} {node['role']:<14} {node['address']:<15} {health}")
    typer.echo(f"kubeconfig: {status.kubeconfig}")
    typer.echo(f"kubectl:    {status.kubectl}")
    if status.state == "running":
        typer.echo(f"try:        {status.kubectl} --kubeconfig {status.kubeconfig} get nodes")


@group.command("up")
def up(
    as_json: JsonFlag = False,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            min=1,
            help="Make the cluster of N node containers configured by Ansible's kubernetes_node "
            "role (one control plane, N-1 workers) instead of the single-node one.",
        ),
    ] = None,
) -> None:
    """Start the cluster (under a minute once built); does nothing if it already runs."""
    from modelyard.infra.local_cluster.runtime import up as start

    _show(start(lambda line: typer.echo(line, err=as_json), node_count=nodes), as_json)


@group.command("down")
def down(
    as_json: JsonFlag = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="Remove the node containers and their data.")
    ] = False,
) -> None:
    """Stop the cluster and its pods, leaving nothing running (its data stays for the next up)."""
    from modelyard.infra.local_cluster.runtime import down as stop

    _show(stop(lambda line: typer.echo(line, err=as_json), destroy=destroy), as_json)


@group.command("status")
def status(as_json: JsonFlag = False) -> None:
    """Whether the cluster runs, each program's health, its kubeconfig and kubectl."""
    from modelyard.infra.local_cluster.runtime import status as current

    _show(current(), as_json)
