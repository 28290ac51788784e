"""Systemd test hosts in Docker, reached over SSH, for the Ansible tests and `make bench`.

Three hosts stand in for an environment: `platform` (Docker host + Jenkins agent) and two
Kubernetes nodes, `cp` (control plane) and `w1` (worker), systemd containers made as the local
cluster makes its nodes; all get the base and node_exporter roles. The environment is a private
copy of staging with a test registry CA, a Jenkins controller key and the Kubernetes programs
and images `make cluster-tools` built, pinned by sha256 as an air-gapped site pins them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from modelyard.infra.local_cluster import host_containers
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.node_containers import (
    CONTAINERD_VOLUME_PATH,
    NODE_RUN_FLAGS,
    container_node_settings,
)

REPO = Path(__file__).resolve().parents[2]
HOST_DIR = Path(__file__).parent / "host"
ENV = "staging"
NODES = {"cp": 10, "w1": 11}  # Kubernetes nodes and their address on the lab network (.N)
PLATFORM_ADDRESS = 20
# DESIGN.md's flags for systemd containers, plus CAP_NET_ADMIN: it acts only in the host's own
# network namespace, and both nftables and dockerd's bridge need it (ansible/README.md).
RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
]  # fmt: skip


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def build_host_image() -> str:
    """The test host image (needs debian:bookworm-slim); tagged by its Dockerfile's content."""
    digest = hashlib.sha256((HOST_DIR / "Dockerfile").read_bytes()).hexdigest()[:12]
    tag = f"modelyard-ansible-host:{digest}"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(HOST_DIR)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return tag


@dataclass(frozen=True)
class LabHost:
    name: str  # inventory name, also its name on the lab's Docker network
    container: str
    ssh_port: int

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the host as root (docker exec: the verifier's own channel)."""
        return docker("exec", self.container, "bash", "-c", script, check=check)


@dataclass(frozen=True)
class Run:
    rc: int
    output: str
    changed_tasks: list[str]
    hosts: dict[str, dict[str, int]]
    seconds: float


@dataclass(frozen=True)
class Lab:
    hosts: dict[str, LabHost]
    work: Path
    inventory: Path
    environments: Path
    key: Path
    registry_ca: str
    agent_public_key: str
    api_port: int  # the control plane's API server, published on 127.0.0.1

    @property
    def state(self) -> Path:
        return self.work / "state"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "ansible" / ENV / "kubeconfig" / "cp.yaml"

    def env(self) -> dict[str, str]:
        """The process environment `modelyard configure` runs with against the lab."""
        return {
            **os.environ,
            "MODELYARD_ENVIRONMENTS_DIR": str(self.environments),
            "MODELYARD_STATE_DIR": str(self.state),
        }

    def cli(self, *args: str) -> Run:
        """`modelyard configure staging` against the lab, as a user runs it."""
        started = time.monotonic()
        run = subprocess.run(
            [str(REPO / ".venv/bin/modelyard"), "configure", ENV, "--inventory",
             str(self.inventory), *args],
            capture_output=True, text=True, env=self.env(), cwd=REPO, timeout=1200, check=False,
        )  # fmt: skip
        output = run.stdout + run.stderr
        changed = [line.strip() for line in output.splitlines() if line.startswith("  changed ")]
        return Run(run.returncode, output, changed, {}, time.monotonic() - started)

    def library(self) -> Run:
        """The same through the library the CLI wraps, keeping the per-host counts."""
        from modelyard.pipelines.configure import configure

        lines: list[str] = []
        saved = dict(os.environ)
        os.environ.update(self.env())
        started = time.monotonic()
        try:
            result = configure(ENV, inventory=self.inventory, on_event=lines.append)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return Run(
            rc=0 if result.succeeded else 1,
            output="\n".join(lines),
            changed_tasks=[line.strip() for line in lines if line.startswith("  changed ")],
            hosts={
                h.host: {"changed": h.changed, "failed": h.failed, "unreachable": h.unreachable}
                for h in result.hosts
            },
            seconds=time.monotonic() - started,
        )


def ssh(
    host: LabHost, key: Path, *args: str, user: str = "admin", options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    *command, destination = host_containers.ssh_command(host.ssh_port, key, user)
    return subprocess.run([*command, *options, destination, *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


@contextmanager
def open_lab(image: str, node_image: str, binaries: Binaries, work: Path) -> Iterator[Lab]:
    """Start the hosts and write the inventory and environment; remove everything afterwards."""
    key, agent_key = work / "id_ed25519", work / "jenkins_controller"
    for path in (key, agent_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    network = f"myd-ansible-{uuid.uuid4().hex[:8]}"
    # Fixed addresses on a free 10.251.N.0/24: the nodes' routes use them.
    prefix = host_containers.create_network(network, "10.251")
    hosts: dict[str, LabHost] = {}
    try:
        public = key.with_suffix(".pub").read_text().strip()
        hosts["platform"] = _start_host(
            image, network, "platform", public, [f"--ip={prefix}.{PLATFORM_ADDRESS}", *RUN_FLAGS]
        )
        for name, last in NODES.items():
            flags = [f"--ip={prefix}.{last}", *NODE_RUN_FLAGS,
                     "-v", f"{network}-{name}-containerd:{CONTAINERD_VOLUME_PATH}"]  # fmt: skip
            if name == "cp":
                flags += ["-p", "127.0.0.1::6443"]
            hosts[name] = _start_host(node_image, network, name, public, flags)
        for host in hosts.values():
            host_containers.wait_for_ssh(host.name, host.ssh_port, key)
        api_port = host_containers.published_port(hosts["cp"].container, "6443/tcp")
        inventory = work / "hosts.yml"
        _write_inventory(inventory, hosts, key, prefix, api_port)
        agent_public = agent_key.with_suffix(".pub").read_text().strip()
        environments = work / "environments"
        ca = _write_environment(environments, work, agent_public, binaries)
        yield Lab(hosts, work, inventory, environments, key, ca, agent_public, api_port)
    finally:
        for host in hosts.values():
            docker("rm", "-f", "-v", host.container, check=False)
        for name in NODES:
            docker("volume", "rm", f"{network}-{name}-containerd", check=False)
        docker("network", "rm", network, check=False)


def _start_host(image: str, network: str, name: str, public_key: str, flags: list[str]) -> LabHost:
    container = f"{network}-{name}"
    port = host_containers.start_host(image, container, name, network, public_key, flags)
    return LabHost(name=name, container=container, ssh_port=port)


def _write_inventory(
    path: Path, hosts: dict[str, LabHost], key: Path, prefix: str, api_port: int
) -> None:
    def entry(host: LabHost) -> dict[str, object]:
        return {"ansible_host": "127.0.0.1", "ansible_port": host.ssh_port}

    def node(host: LabHost) -> dict[str, object]:
        # Nodes reach each other on the lab network; this machine reaches the API on 127.0.0.1.
        return {**entry(host), "kubernetes_node_address": f"{prefix}.{NODES[host.name]}",
                "kubernetes_node_kubeconfig_server": f"127.0.0.1:{api_port}"}  # fmt: skip

    inventory = {
        "all": {
            "vars": {
                "ansible_user": "admin",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": " ".join(host_containers.SSH_OPTIONS),
            },
            "children": {
                "docker_hosts": {"hosts": {"platform": entry(hosts["platform"])}},
                "jenkins_agents": {"hosts": {"platform": None}},
                "kubernetes_nodes": {"children": {
                    "kubernetes_control_plane": {"hosts": {"cp": node(hosts["cp"])}},
                    "kubernetes_workers": {"hosts": {"w1": node(hosts["w1"])}},
                }},
            },
        }
    }  # fmt: skip
    path.write_text(yaml.safe_dump(inventory), encoding="utf-8")


def _write_environment(folder: Path, work: Path, agent_key: str, binaries: Binaries) -> str:
    """Staging as committed, plus the lab's registry CA, agent key, extra port and the nodes'
    settings for containers (programs and images built here, pinned by sha256)."""
    shutil.copytree(REPO / "environments", folder)
    ca_key, ca_pem = work / "registry-ca.key", work / "registry-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=modelyard test registry CA", "-days", "1",
         "-keyout", str(ca_key), "-out", str(ca_pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    path = folder / f"Pulumi.{ENV}.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    hosts = document["config"]["modelyard:hosts"]
    hosts["registry"] = {"address": "registry.test.internal:5000", "caFile": str(ca_pem)}
    hosts["agentAuthorizedKey"] = agent_key
    hosts["firewall"] = {"extraTcpPorts": [8443]}
    hosts["kubernetes"] = container_node_settings(binaries)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return ca_pem.read_text(encoding="utf-8")
