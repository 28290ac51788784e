"""`modelyard cluster up|down|status`: the cluster's life cycle on this machine."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.contracts.environment import ConfigError
from modelyard.infra.local_cluster import configuration, images, network, nodes, storage, supervisor
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.components import Component, components
from modelyard.infra.local_cluster.settings import API_PORT, NODE_NAME, ClusterPaths

Say = Callable[[str], None]
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Status:
    state: str  # running, stopped or degraded
    kubeconfig: str
    kubectl: str
    server: str
    kubernetes_version: str
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_ready: bool = False
    # Each node: name, role, address, container state, ready (the multi-node cluster); the
    # single-node cluster's one node otherwise.
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_ip() -> str:
    """The machine's address on its default route: the node's InternalIP (the kubelet refuses a
    loopback one). Finding it sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))  # TEST-NET-3: only selects the outgoing interface
        return str(probe.getsockname()[0])


def current_paths() -> ClusterPaths:
    """This machine's cluster (one per machine): the last one started while any of it runs, else
    this project's own. One that stopped without `cluster down` (a killed run, its node containers
    removed by hand) no longer claims the machine."""
    started = ClusterPaths.last_started()
    if started is not None and (supervisor.pid_of(started, "kube-apiserver") is not None
                                or nodes.any_running(started)):  # fmt: skip
        return started
    return ClusterPaths.own()


def _program_list(paths: ClusterPaths, binaries: Binaries) -> list[Component]:
    return components(paths, binaries, node_ip())


def status(paths: ClusterPaths | None = None) -> Status:
    paths = paths or current_paths()
    binaries = Binaries.find()
    if nodes.is_node_cluster(paths):
        return _nodes_status(paths, binaries)
    found: dict[str, dict[str, Any]] = {}
    for component in _program_list(paths, binaries):
        pid = supervisor.pid_of(paths, component.name)
        found[component.name] = {
            "pid": pid,
            "healthy": pid is not None and supervisor.healthy(component),
        }
    alive = [name for name, c in found.items() if c["pid"] is not None]
    ready = len(alive) == len(found) and _node_ready(paths, binaries)
    node = {"name": NODE_NAME, "role": "control_plane", "address": node_ip(), "ready": ready}
    return _status_of(paths, binaries, ready, bool(alive), components=found, nodes=[node])


def _nodes_status(paths: ClusterPaths, binaries: Binaries) -> Status:
    found = nodes.node_status(paths, binaries)
    running = [n for n in found if n["container"] == "running"]
    ready = bool(found) and all(n["ready"] for n in found) and len(running) == len(found)
    return _status_of(paths, binaries, ready, bool(running), nodes=found)


def _status_of(
    paths: ClusterPaths, binaries: Binaries, ready: bool, anything_runs: bool, **details: Any
) -> Status:
    """What both kinds of cluster report alike: where to reach it, and running (every part
    up and the nodes Ready), stopped (nothing runs) or degraded."""
    return Status(
        state="running" if ready else ("degraded" if anything_runs else "stopped"),
        kubeconfig=str(paths.admin_kubeconfig),
        kubectl=str(binaries.kubectl),
        server=f"https://127.0.0.1:{API_PORT}",
        kubernetes_version=binaries.kubernetes_version,
        node_ready=ready,
        **details,
    )


def up(say: Say, paths: ClusterPaths | None = None, node_count: int | None = None) -> Status:
    """The single-node cluster, or with `node_count` (or once made so) a cluster of that many
    node containers configured by Ansible."""
    paths = paths or current_paths()
    binaries = Binaries.find()
    _refuse_other_owner(paths)
    if node_count is not None or nodes.is_node_cluster(paths):
        if supervisor.pid_of(paths, "kube-apiserver"):
            raise ConfigError("the single-node cluster runs: `modelyard cluster down` it first")
        count = node_count if node_count is not None else nodes.node_count(paths)
        if count < 1:
            raise ConfigError(f"--nodes {count}: a cluster needs at least one node")
        nodes.up(count, say, paths)
        return status(paths)
    current = status(paths)
    if current.state == "running":
        say(f"the cluster is already running (from {paths.root}; kubeconfig {current.kubeconfig})")
        return current
    if current.state == "degraded":
        say("part of the cluster runs: stopping it first")
        down(say, paths)
    started = time.monotonic()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.owner_file.write_text(f"{paths.root.resolve()}\n")
    ip = node_ip()
    say(f"configuring a single-node Kubernetes {binaries.kubernetes_version} in {paths.root}")
    configuration.write_all(paths, binaries, ip)
    network.allow_pod_forwarding(binaries)
    try:
        for component in components(paths, binaries, ip):
            _start(paths, binaries, component, say)
        _wait_for_node(paths, binaries)
        storage.ensure_volumes(paths, binaries)
    except BaseException:
        say("the cluster did not start: stopping what did")
        down(lambda _line: None, paths)
        raise
    say(f"cluster ready in {time.monotonic() - started:.1f}s")
    return status(paths)


def down(say: Say, paths: ClusterPaths | None = None, destroy: bool = False) -> Status:
    """Stops every program and every pod, keeps the folder (certificates, etcd's data), so the
    next `up` brings back what was deployed. `destroy` removes a multi-node cluster's nodes."""
    paths = paths or current_paths()
    binaries = Binaries.find()
    _refuse_other_owner(paths)
    if nodes.is_node_cluster(paths):
        nodes.down(say, paths, destroy=destroy)
        return status(paths)
    if destroy:
        raise ConfigError(
            "--destroy removes a multi-node cluster's nodes; the single-node cluster keeps its "
            f"files in {paths.root}: `modelyard cluster down`, then delete that folder"
        )
    names = [c.name for c in _program_list(paths, binaries)]
    for name in reversed(names):
        if name == "containerd":
            _stop_pods(paths, binaries)
        if supervisor.pid_of(paths, name) is not None:
            say(f"stopping {name}")
        supervisor.stop(paths, name)
    _kill_leftover_shims(paths)
    supervisor.unmount_under(paths.root, paths.run)
    network.remove_host_networking(paths, binaries)
    paths.owner_file.unlink(missing_ok=True)
    return status(paths)


def kubectl(paths: ClusterPaths, binaries: Binaries, *args: str) -> str:
    done = subprocess.run(
        [str(binaries.kubectl), f"--kubeconfig={paths.admin_kubeconfig}", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise ConfigError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _start(paths: ClusterPaths, binaries: Binaries, component: Component, say: Say) -> None:
    t = time.monotonic()
    supervisor.start(paths, component)
    if component.name == "containerd":
        supervisor.wait_until(paths, component, paths.containerd_socket.exists, START_TIMEOUT,
                              "listening on its socket")  # fmt: skip
        images.ensure_pause_image(paths, binaries)
    else:
        supervisor.wait_until(paths, component, lambda: supervisor.healthy(component),
                              START_TIMEOUT)  # fmt: skip
    if component.name == "kube-apiserver":
        _bind_cluster_admins(paths, binaries)
    say(f"  {component.name} up ({time.monotonic() - t:.1f}s)")


def _bind_cluster_admins(paths: ClusterPaths, binaries: Binaries) -> None:
    """kubeadm's admin.conf user is in the group `kubeadm:cluster-admins`, which `kubeadm init`
    binds to cluster-admin once the API server runs: done here the same way, as super-admin."""
    binding = subprocess.run(
        [str(binaries.kubectl), f"--kubeconfig={paths.kubeconfigs / 'super-admin.conf'}",
         "create", "clusterrolebinding", "kubeadm:cluster-admins", "--clusterrole=cluster-admin",
         "--group=kubeadm:cluster-admins", "--dry-run=client", "-o", "yaml"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    subprocess.run(
        [str(binaries.kubectl), f"--kubeconfig={paths.kubeconfigs / 'super-admin.conf'}",
         "apply", "-f", "-"],
        input=binding.stdout, capture_output=True, text=True, check=True,
    )  # fmt: skip


def _node_ready(paths: ClusterPaths, binaries: Binaries) -> bool:
    try:
        node = json.loads(kubectl(paths, binaries, "get", "node", NODE_NAME, "-o", "json"))
    except (ConfigError, ValueError, subprocess.TimeoutExpired):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _wait_for_node(paths: ClusterPaths, binaries: Binaries) -> None:
    """Ready node, and the default ServiceAccount a namespace needs before pods can be created."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _node_ready(paths, binaries):
            try:
                kubectl(paths, binaries, "get", "serviceaccount", "default", "-n", "default")
                return
            except ConfigError:
                pass
        time.sleep(0.5)
    raise supervisor.ClusterStartFailed(
        f"node {NODE_NAME} was not Ready after {START_TIMEOUT:.0f}s:\n"
        f"{supervisor.log_tail(paths, 'kubelet')}"
    )


def _stop_pods(paths: ClusterPaths, binaries: Binaries) -> None:
    """Every pod container, killed through containerd while it still runs (the kubelet is
    stopped already, and containers outlive containerd on purpose)."""
    if supervisor.pid_of(paths, "containerd") is None:
        return
    try:
        containers = images.ctr(paths, binaries, "containers", "list", "--quiet").split()
    except subprocess.CalledProcessError:
        return
    for container in containers:
        for args in (("tasks", "kill", "--signal", "SIGKILL", container),
                     ("tasks", "delete", "--force", container),
                     ("containers", "delete", container)):  # fmt: skip
            try:
                images.ctr(paths, binaries, *args)
            except subprocess.CalledProcessError:
                continue


def _kill_leftover_shims(paths: ClusterPaths) -> None:
    """containerd's shims run in sessions of their own; any that outlived their tasks go too."""
    marker = str(paths.containerd_socket)
    done = subprocess.run(["pgrep", "-f", f"containerd-shim.*{marker}"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    for pid in done.stdout.split():
        subprocess.run(["kill", "-9", pid], check=False)


def _refuse_other_owner(paths: ClusterPaths) -> None:
    try:
        owner = paths.owner_file.read_text().strip()
    except OSError:
        return
    if owner != str(paths.root.resolve()) and supervisor.pid_of(paths, "kube-apiserver"):
        raise ConfigError(
            f"a cluster from {owner} runs on this machine (one per machine): stop it with "
            f"`MODELYARD_STATE_DIR={owner.removesuffix('/cluster')} modelyard cluster down`"
        )
