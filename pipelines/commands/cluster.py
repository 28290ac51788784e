"""`modelyard cluster up|down|status`: the Kubernetes nodes on this machine, made by Ansible's
kubernetes_node role (infra/local_cluster; `make cluster-tools` builds their programs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from modelyard.infra.local_cluster.settings import DEFAULT_NODES

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
    for node in status.nodes:
        health = "Ready" if node["ready"] else f"not ready (container {node['container']})"
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
            help=f"How many nodes to make (one control plane, N-1 workers; default {DEFAULT_NODES}, "
            "or the size it was made with). Another size needs `cluster down --destroy` first.",
        ),
    ] = None,
    kubernetes_version: Annotated[
        str | None,
        typer.Option(
            "--kubernetes-version",
            help="The Kubernetes the nodes run (default the pinned one; `make cluster-tools` also "
            "builds the one before it). Nodes on an earlier one are upgraded one at a time.",
        ),
    ] = None,
) -> None:
    """Make the nodes and configure them with Ansible (a few minutes the first time), start them
    again, or upgrade them; does nothing if they already run the version asked for."""
    from modelyard.infra.local_cluster.runtime import up as start

    def say(line: str) -> None:
        typer.echo(line, err=as_json)

    _show(start(say, node_count=nodes, kubernetes_version=kubernetes_version), as_json)


@group.command("down")
def down(
    as_json: JsonFlag = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="Remove the node containers and their data.")
    ] = False,
) -> None:
    """Stop the nodes and their pods, leaving nothing running (etcd's data and the images stay for
    the next up)."""
    from modelyard.infra.local_cluster.runtime import down as stop

    _show(stop(lambda line: typer.echo(line, err=as_json), destroy=destroy), as_json)


@group.command("status")
def status(as_json: JsonFlag = False) -> None:
    """Whether the cluster runs, each node's role and readiness, its kubeconfig and kubectl."""
    from modelyard.infra.local_cluster.runtime import status as current

    _show(current(), as_json)
