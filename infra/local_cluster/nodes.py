"""`modelyard cluster up [--nodes N]`: the cluster on this machine, N Kubernetes nodes made the way a
site makes its own: N hosts (systemd containers, node_containers.py) configured over SSH by the
kubernetes_node role, one control plane and N-1 workers (one node alone is a control plane that
also runs pods). Its state (network, nodes, SSH key, inventory, Ansible's artifacts) lives in the
cluster folder; etcd's data and each node's images live in the node containers and their volumes,
so `down` (stop) and `up` (start) keep them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.hosts import KubernetesSettings
from modelyard.infra.local_cluster import host_containers, storage
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.node_containers import (
    CONTAINERD_VOLUME_PATH,
    NODE_RUN_FLAGS,
    SHARED_VOLUMES_PATH,
    build_node_image,
    container_node_settings,
)
from modelyard.infra.local_cluster.settings import API_PORT, LOCAL_STORAGE_CLASS, ClusterPaths

Say = Callable[[str], None]
STATE_FILE = "nodes.json"
CONTAINER_PREFIX = "modelyard-node-"
SUBNETS = "10.250"  # the nodes' network is a free 10.250.N.0/24: away from Docker's pools
READY_TIMEOUT = 180.0
REGISTRY_TAG = "kubernetes_node_registry"  # the role's tasks that trust a registry
# The machine-wide settings each kubelet checks at start and cannot write from a container
# (/proc/sys is read-only there): set on this machine first.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # control_plane or worker
    address: str  # on the nodes' network
    container: str
    ssh_port: int


@dataclass(frozen=True)
class NodeCluster:
    network: str
    prefix: str  # the network's first three octets
    nodes: list[Node]
    formed: bool  # the playbook has made every node part of the cluster
    # What the playbook last made the nodes run ("": not known, from a kit that did not say).
    kubernetes_version: str = ""

    @classmethod
    def load(cls, paths: ClusterPaths) -> NodeCluster | None:
        try:
            raw = json.loads((paths.root / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return cls(raw["network"], raw["prefix"], [Node(**n) for n in raw["nodes"]],
                   raw["formed"], raw.get("kubernetes_version", ""))  # fmt: skip

    def save(self, paths: ClusterPaths) -> None:
        (paths.root / STATE_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @property
    def host_address(self) -> str:
        """This machine on the nodes' network (Docker gives the gateway the first address): what
        nodes and pods reach a service published here by."""
        return f"{self.prefix}.1"

    def reached(self) -> NodeCluster:
        """The same nodes with the SSH ports Docker published at their last start."""
        nodes = [replace(n, ssh_port=host_containers.published_port(n.container))
                 for n in self.nodes]  # fmt: skip
        return replace(self, nodes=nodes)


def node_count(paths: ClusterPaths) -> int:
    cluster = NodeCluster.load(paths)
    return len(cluster.nodes) if cluster else 0


def up(count: int, say: Say, paths: ClusterPaths, binaries: Binaries) -> None:
    """Start the nodes (made on the first `up`, started again after a `down`, upgraded one at a
    time when `binaries` are a later Kubernetes than they run) and wait until each is Ready."""
    cluster = NodeCluster.load(paths)
    if cluster is not None and len(cluster.nodes) != count:
        raise ConfigError(
            f"the cluster in {paths.root} has {len(cluster.nodes)} nodes, not {count}: "
            "`modelyard cluster down --destroy` first to make it again with another size"
        )
    if cluster is None:
        _refuse_foreign_nodes()
    else:
        _refuse_downgrade(cluster, binaries, paths)
    _set_host_sysctls()
    started, since = time.monotonic(), datetime.now(UTC).replace(microsecond=0)
    restarted = Restarted(frozenset(), since)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.owner_file.write_text(f"{paths.root.resolve()}\n")
    if cluster is None:
        say(f"making {count} Kubernetes {binaries.kubernetes_version} node(s) in containers")
        cluster = _create(count, paths, say)
    else:
        restarted = Restarted(_start_stopped(cluster, say, paths), since)
    upgrading = cluster.formed and cluster.kubernetes_version != binaries.kubernetes_version
    if upgrading:
        _wait_ready(cluster, binaries, paths, restarted)  # kubeadm upgrades a running cluster
        say(f"upgrading the nodes from Kubernetes {cluster.kubernetes_version or '(not recorded)'}"
            f" to {binaries.kubernetes_version}, one node at a time")  # fmt: skip
    if upgrading or not cluster.formed:
        cluster = cluster.reached()  # SSH is published on a port Docker picks at each start
        _configure(cluster, binaries, paths, say)
        cluster = replace(cluster, formed=True, kubernetes_version=binaries.kubernetes_version)
        cluster.save(paths)
    _wait_ready(cluster, binaries, paths, restarted)
    if all(_mounts_shared_volumes(node) for node in cluster.nodes):
        storage.ensure_volumes(paths, binaries, SHARED_VOLUMES_PATH,
                               tuple(node.name for node in cluster.nodes))  # fmt: skip
    else:
        say(f"  the nodes were made by an older kit, without shared volumes: no "
            f"{LOCAL_STORAGE_CLASS} class (`modelyard cluster down --destroy` and `up` "
            "make them anew with it)")  # fmt: skip
    say(f"{count} node(s) ready in {time.monotonic() - started:.1f}s")


def down(say: Say, paths: ClusterPaths, destroy: bool = False) -> None:
    """Stop every node (their data stays for the next `up`), or remove them with everything
    they hold."""
    cluster = NodeCluster.load(paths)
    if cluster is None:
        return
    for node in reversed(cluster.nodes):
        if destroy:
            say(f"removing node {node.name}")
            subprocess.run(["docker", "rm", "-f", "-v", node.container], capture_output=True,
                           check=False)  # fmt: skip
            subprocess.run(["docker", "volume", "rm", _volume(node)], capture_output=True,
                           check=False)  # fmt: skip
        elif _container_state(node) == "running":
            say(f"stopping node {node.name}")
            subprocess.run(["docker", "stop", "-t", "30", node.container], capture_output=True,
                           check=False)  # fmt: skip
    if destroy:
        subprocess.run(["docker", "network", "rm", cluster.network], capture_output=True,
                       check=False)  # fmt: skip
        (paths.root / STATE_FILE).unlink()
        paths.admin_kubeconfig.unlink(missing_ok=True)
        shutil.rmtree(paths.volumes, ignore_errors=True)  # their claims went with the cluster
    paths.owner_file.unlink(missing_ok=True)


def any_running(paths: ClusterPaths) -> bool:
    cluster = NodeCluster.load(paths)
    return cluster is not None and any(_container_state(n) == "running" for n in cluster.nodes)


def _start_stopped(cluster: NodeCluster, say: Say, paths: ClusterPaths) -> frozenset[str]:
    """Start the nodes that are not running; the names of those started."""
    states = {node.name: _container_state(node) for node in cluster.nodes}
    gone = [node.container for node in cluster.nodes if states[node.name] == "missing"]
    if gone:
        raise ConfigError(
            f"the cluster in {paths.root} lost node container(s) {', '.join(gone)} (removed "
            "outside modelyard): `modelyard cluster down --destroy` forgets it and removes the "
            "rest, then `modelyard cluster up` makes it anew"
        )
    for node in cluster.nodes:
        if states[node.name] != "running":
            say(f"starting node {node.name}")
            started = subprocess.run(["docker", "start", node.container], capture_output=True,
                                     text=True, check=False)  # fmt: skip
            if started.returncode != 0:
                raise ConfigError(f"docker start {node.container} (node {node.name}) failed: "
                                  f"{started.stderr.strip()}")  # fmt: skip
    return frozenset(name for name, state in states.items() if state != "running")


def node_status(paths: ClusterPaths, binaries: Binaries) -> list[dict[str, Any]]:
    """Each node: its role, address, container state and whether Kubernetes says it is Ready."""
    cluster = NodeCluster.load(paths)
    if cluster is None:
        return []
    ready = _ready_nodes(paths, binaries)
    return [
        {"name": n.name, "role": n.role, "address": n.address,
         "container": _container_state(n), "ready": ready.get(n.name, False)}
        for n in cluster.nodes
    ]  # fmt: skip


def _create(count: int, paths: ClusterPaths, say: Say) -> NodeCluster:
    image = build_node_image()
    network = f"{CONTAINER_PREFIX}net"
    prefix = host_containers.create_network(network, SUBNETS)
    key = paths.root / "ssh" / "id_ed25519"
    if not key.is_file():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "modelyard-cluster",
                        "-f", str(key)], check=True)  # fmt: skip
    public = key.with_suffix(".pub").read_text(encoding="utf-8").strip()
    nodes: list[Node] = []
    for index in range(count):
        name = "cp" if index == 0 else f"w{index}"
        node = Node(name, "control_plane" if index == 0 else "worker", f"{prefix}.{10 + index}",
                    f"{CONTAINER_PREFIX}{name}", 0)  # fmt: skip
        nodes.append(_start(node, image, network, public, paths))
        NodeCluster(network, prefix, nodes, formed=False).save(paths)  # `down --destroy` finds it
    say(f"  nodes started on {prefix}.0/24: {', '.join(n.name for n in nodes)}")
    return NodeCluster(network, prefix, nodes, formed=False)


def _refuse_downgrade(cluster: NodeCluster, binaries: Binaries, paths: ClusterPaths) -> None:
    if cluster.kubernetes_version and _release(cluster.kubernetes_version) > _release(
        binaries.kubernetes_version
    ):
        raise ConfigError(
            f"the cluster in {paths.root} runs Kubernetes {cluster.kubernetes_version}, newer than "
            f"{binaries.kubernetes_version}: kubeadm cannot downgrade nodes. Use "
            f"`--kubernetes-version {cluster.kubernetes_version}` (or later), or `modelyard cluster "
            "down --destroy` and `up` to make it anew"
        )


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.removeprefix("v").split("."))


def _refuse_foreign_nodes() -> None:
    others = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={CONTAINER_PREFIX}"],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    if others:
        raise ConfigError(
            f"node containers of another cluster exist on this machine ({CONTAINER_PREFIX}*; one "
            "cluster per machine): remove it with `modelyard cluster down --destroy` run with "
            "the MODELYARD_STATE_DIR it was made with"
        )


def _start(node: Node, image: str, network: str, public_key: str, paths: ClusterPaths) -> Node:
    paths.volumes.mkdir(parents=True, exist_ok=True)
    flags = ["--ip", node.address, *NODE_RUN_FLAGS, "--restart", "no",
             "-v", f"{_volume(node)}:{CONTAINERD_VOLUME_PATH}",
             "-v", f"{paths.volumes.resolve()}:{SHARED_VOLUMES_PATH}"]  # fmt: skip
    if node.role == "control_plane":
        flags += ["-p", f"127.0.0.1:{API_PORT}:6443"]  # kubeconfigs use loopback only
    port = host_containers.start_host(image, node.container, node.name, network, public_key, flags)
    return replace(node, ssh_port=port)


def _configure(cluster: NodeCluster, binaries: Binaries, paths: ClusterPaths, say: Say) -> None:
    """The kubernetes_node role over SSH, as `modelyard configure` runs it on a site's hosts."""
    from modelyard.pipelines.configure import ansible_dir, kubernetes_variables, run_playbook

    key = paths.root / "ssh" / "id_ed25519"
    for node in cluster.nodes:
        host_containers.wait_for_ssh(f"node {node.name} ({node.container})", node.ssh_port, key)
    inventory = paths.root / "inventory.yml"
    _write_inventory(inventory, cluster, key)
    settings = KubernetesSettings.model_validate(
        {**container_node_settings(binaries), "schedulableControlPlane": len(cluster.nodes) == 1}
    )
    kubeconfig_dir = paths.root / "ansible" / "kubeconfig"
    # The nodes sit on a private Docker network with no base role (no nftables firewall to add
    # ports to); the Ansible tests run the role behind the base firewall.
    variables = {**kubernetes_variables(settings, "", "", kubeconfig_dir),
                 "kubernetes_node_firewall": False}  # fmt: skip
    result = run_playbook(
        paths.root / "ansible", ansible_dir() / "playbooks" / "kubernetes_nodes.yml", inventory,
        variables, kubeconfig_dir, on_event=lambda line: say(f"  {line}"),
    )  # fmt: skip
    if not result.succeeded:
        raise ConfigError(
            f"the nodes were not configured ({result.status}); Ansible's artifacts: "
            f"{result.artifacts}. Run `modelyard cluster up` again to retry, or `modelyard cluster "
            "down --destroy` to remove the nodes."
        )
    paths.kubeconfigs.mkdir(parents=True, exist_ok=True)
    fetched = (kubeconfig_dir / "cp.yaml").read_text(encoding="utf-8")
    paths.admin_kubeconfig.touch(mode=0o600)
    paths.admin_kubeconfig.write_text(fetched, encoding="utf-8")


def trust_registry(paths: ClusterPaths, address: str, ca_pem: str, say: Say) -> None:
    """Every node's containerd pulls from the registry at `address` (HOST:PORT), trusting
    `ca_pem`: the role's registry tasks alone, as `modelyard configure` runs them on a site's
    nodes when the platform's registry is known."""
    from modelyard.pipelines.configure import ansible_dir, run_playbook

    cluster = NodeCluster.load(paths)
    if cluster is None or not cluster.formed:
        raise ConfigError(f"no cluster in {paths.root}: `modelyard cluster up` makes it")
    cluster = cluster.reached()
    key = paths.root / "ssh" / "id_ed25519"
    inventory = paths.root / "inventory.yml"
    _write_inventory(inventory, cluster, key)
    result = run_playbook(
        paths.root / "ansible", ansible_dir() / "playbooks" / "kubernetes_nodes.yml", inventory,
        {"kubernetes_node_registry": address, "kubernetes_node_registry_ca": ca_pem},
        paths.root / "ansible" / "kubeconfig", tags=[REGISTRY_TAG],
        on_event=lambda line: say(f"  {line}"),
    )  # fmt: skip
    if not result.succeeded:
        raise ConfigError(
            f"the nodes were not made to trust {address} ({result.status}); Ansible's "
            f"artifacts: {result.artifacts}"
        )


def _write_inventory(path: Path, cluster: NodeCluster, key: Path) -> None:
    def host(node: Node) -> dict[str, Any]:
        return {"ansible_host": "127.0.0.1", "ansible_port": node.ssh_port,
                "kubernetes_node_address": node.address,
                "kubernetes_node_kubeconfig_server": f"127.0.0.1:{API_PORT}"}  # fmt: skip

    control = [n for n in cluster.nodes if n.role == "control_plane"]
    workers = [n for n in cluster.nodes if n.role == "worker"]
    inventory = {"all": {
        "vars": {
            "ansible_user": "admin",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": " ".join(host_containers.SSH_OPTIONS),
        },
        "children": {"kubernetes_nodes": {"children": {
            "kubernetes_control_plane": {"hosts": {n.name: host(n) for n in control}},
            "kubernetes_workers": {"hosts": {n.name: host(n) for n in workers}},
        }}},
    }}  # fmt: skip
    path.write_text(yaml.safe_dump(inventory), encoding="utf-8")


@dataclass(frozen=True)
class Restarted:
    """Nodes started again by this `up`: etcd still holds the Ready their kubelets reported
    before the stop, which says nothing of now. Theirs counts once reported since `at`."""

    names: frozenset[str]
    at: datetime


def _wait_ready(
    cluster: NodeCluster, binaries: Binaries, paths: ClusterPaths, restarted: Restarted
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    names = {n.name for n in cluster.nodes}
    while time.monotonic() < deadline:
        ready = _ready_nodes(paths, binaries, restarted)
        if all(ready.get(name) for name in names):
            return
        time.sleep(1)
    raise ConfigError(
        f"nodes not Ready after {READY_TIMEOUT:.0f}s: "
        f"{sorted(n for n in names if not _ready_nodes(paths, binaries, restarted).get(n))}; "
        f"see `{binaries.kubectl} --kubeconfig {paths.admin_kubeconfig} describe nodes`"
    )


def _ready_nodes(
    paths: ClusterPaths, binaries: Binaries, restarted: Restarted | None = None
) -> dict[str, bool]:
    done = subprocess.run(
        [str(binaries.kubectl), f"--kubeconfig={paths.admin_kubeconfig}", "get", "nodes",
         "-o", "json", "--request-timeout=5s"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        return {}

    def ready(node: dict[str, Any]) -> bool:
        for condition in node["status"].get("conditions", []):
            if condition["type"] == "Ready":
                if restarted is not None and node["metadata"]["name"] in restarted.names:
                    said = datetime.fromisoformat(condition["lastHeartbeatTime"])
                    if said < restarted.at:
                        return False
                return bool(condition["status"] == "True")
        return False

    return {item["metadata"]["name"]: ready(item) for item in json.loads(done.stdout)["items"]}


def _mounts_shared_volumes(node: Node) -> bool:
    found = subprocess.run(["docker", "inspect", "-f", "{{json .Mounts}}", node.container],
                           capture_output=True, text=True, check=False)  # fmt: skip
    mounts = json.loads(found.stdout or "[]") if found.returncode == 0 else []
    return any(mount.get("Destination") == SHARED_VOLUMES_PATH for mount in mounts)


def _container_state(node: Node) -> str:
    done = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", node.container],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else "missing"


def _volume(node: Node) -> str:
    return f"{node.container}-containerd"


def _set_host_sysctls() -> None:
    for name, value in KUBELET_SYSCTLS.items():
        path = Path("/proc/sys") / name
        if path.read_text().strip() != value:
            path.write_text(value)
