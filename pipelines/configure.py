"""Configure an environment's hosts: ansible/playbooks run through ansible-runner.

The environment file's `modelyard:hosts` section becomes the roles' variables (the inventory
only lists machines). No secret passes through Ansible's variables or the process environment:
ansible-runner writes both into its artifacts (the nodes' join tokens are made and used on the
hosts themselves).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from modelyard.contracts.environment import (
    ConfigError,
    Environment,
    load_environment,
    project_root,
)
from modelyard.contracts.environment.hosts import KubernetesSettings
from modelyard.contracts.state import ansible_dir as runner_dir
from modelyard.pipelines.errors import PipelineError

# What ansible-playbook needs from the caller's environment; everything else (cloud keys,
# CI credentials) stays out of the job, and so out of ansible-runner's artifacts.
_PASSED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "TERM",
)
_PASSED_PREFIXES = ("ANSIBLE_", "AWX_", "RUNNER_", "LC_")


@dataclass(frozen=True)
class HostSummary:
    host: str
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int

    @property
    def healthy(self) -> bool:
        return not self.failed and not self.unreachable


@dataclass(frozen=True)
class ConfigureResult:
    status: str
    rc: int
    hosts: list[HostSummary]
    artifacts: Path
    kubeconfig_dir: Path
    detail: str = ""

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and self.status == "successful" and all(h.healthy for h in self.hosts)

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts)


def ansible_dir() -> Path:
    return project_root() / "ansible"


def inventory_path(env: str) -> Path:
    return ansible_dir() / "inventories" / env / "hosts.yml"


def role_variables(environment: Environment, kubeconfig_dir: Path) -> dict[str, Any]:
    """The roles' variables, from the environment's `modelyard:hosts` section."""
    hosts = environment.hosts
    registry = hosts.registry
    registry_address = registry.address if registry else ""
    registry_ca = _read_ca(environment, registry.ca_file) if registry and registry.ca_file else ""
    return {
        "base_time_servers": hosts.time_servers,
        "base_unattended_upgrades": hosts.unattended_upgrades,
        "base_firewall_tcp_ports": hosts.firewall.extra_tcp_ports,
        "base_firewall_udp_ports": hosts.firewall.extra_udp_ports,
        "node_exporter_port": hosts.node_exporter_port,
        "docker_host_deploy_user": hosts.deploy_user,
        "docker_host_log_max_size": hosts.log_max_size,
        "docker_host_log_max_files": hosts.log_max_files,
        "docker_host_registry": registry_address,
        "docker_host_registry_ca": registry_ca,
        "jenkins_agent_user": hosts.agent_user,
        "jenkins_agent_authorized_key": hosts.agent_authorized_key or "",
        "jenkins_agent_registry_ca": registry_ca,
        **kubernetes_variables(hosts.kubernetes, registry_address, registry_ca, kubeconfig_dir),
    }


def kubernetes_variables(
    kubernetes: KubernetesSettings, registry: str, registry_ca: str, kubeconfig_dir: Path
) -> dict[str, Any]:
    """The kubernetes_node role's variables (`modelyard:hosts.kubernetes`)."""
    variables: dict[str, Any] = {
        "kubernetes_node_version": kubernetes.version,
        "kubernetes_node_sha256": dict(kubernetes.sha256),
        "kubernetes_node_artifacts": (
            str(_project_path(kubernetes.artifacts)) if kubernetes.artifacts else ""
        ),
        "kubernetes_node_image_archives": [
            {
                "path": str(_project_path(archive.path)),
                "sha256": archive.sha256,
                "images": archive.images,
                "control_plane_only": archive.control_plane_only,
            }
            for archive in kubernetes.image_archives
        ],
        "kubernetes_node_image_repository": kubernetes.image_repository,
        "kubernetes_node_etcd_image_tag": kubernetes.etcd_image_tag or "",
        "kubernetes_node_pod_subnet": kubernetes.pod_subnet,
        "kubernetes_node_service_subnet": kubernetes.service_subnet,
        "kubernetes_node_cni": kubernetes.cni,
        "kubernetes_node_schedulable_control_plane": kubernetes.schedulable_control_plane,
        "kubernetes_node_upstream_dns": kubernetes.upstream_dns,
        "kubernetes_node_cgroup_driver": kubernetes.cgroup_driver,
        "kubernetes_node_kubelet_config": kubernetes.kubelet_config,
        "kubernetes_node_kube_proxy_config": kubernetes.kube_proxy_config,
        "kubernetes_node_controller_manager_args": kubernetes.controller_manager_args,
        "kubernetes_node_api_server_args": kubernetes.api_server_args,
        "kubernetes_node_registry": registry,
        "kubernetes_node_registry_ca": registry_ca,
        "kubernetes_node_kubeconfig_dir": str(kubeconfig_dir),
    }
    if kubernetes.release_url:
        variables["kubernetes_node_release_base_url"] = kubernetes.release_url
    return variables


def configure(
    env: str,
    *,
    check: bool = False,
    limit: str | None = None,
    tags: list[str] | None = None,
    inventory: Path | None = None,
    playbook: str = "site.yml",
    on_event: Callable[[str], None] = print,
) -> ConfigureResult:
    """Run PLAYBOOK against ENV's hosts, reporting each task's result through `on_event`."""
    environment = load_environment(env)
    inventory = inventory or inventory_path(env)
    _require_hosts(inventory, env)
    playbook_path = ansible_dir() / "playbooks" / playbook
    if not playbook_path.is_file():
        known = ", ".join(sorted(p.name for p in playbook_path.parent.glob("*.yml")))
        raise PipelineError(f"no playbook {playbook!r} in {playbook_path.parent}; known: {known}")
    private = runner_dir(env)  # ansible-runner's artifacts are kept there for inspection
    kubeconfig_dir = private / "kubeconfig"
    return run_playbook(
        private, playbook_path, inventory, role_variables(environment, kubeconfig_dir),
        kubeconfig_dir, limit=limit, tags=tags, check=check, on_event=on_event,
    )  # fmt: skip


def run_playbook(
    private: Path,
    playbook: Path,
    inventory: Path,
    extravars: dict[str, Any],
    kubeconfig_dir: Path,
    *,
    limit: str | None = None,
    tags: list[str] | None = None,
    check: bool = False,
    on_event: Callable[[str], None] = print,
) -> ConfigureResult:
    """One ansible-runner job, its artifacts kept in `private`."""
    private.mkdir(parents=True, exist_ok=True)
    config = ansible_runner.RunnerConfig(
        private_data_dir=str(private),
        project_dir=str(ansible_dir()),
        playbook=str(playbook),
        inventory=str(inventory),
        extravars=extravars,
        limit=limit,
        tags=",".join(t for tag in tags or [] for t in tag.split(",") if t) or None,
        cmdline="--check" if check else None,
        rotate_artifacts=20,
        quiet=True,
    )
    config.prepare()
    config.env = _job_environment(config.env)
    runner = ansible_runner.Runner(config=config, event_handler=_progress(on_event))
    runner.run()
    hosts = _summaries(runner.stats or {})
    rc = int(runner.rc if runner.rc is not None else 1)
    return ConfigureResult(
        status=str(runner.status),
        rc=rc,
        hosts=hosts,
        artifacts=Path(config.artifact_dir),
        kubeconfig_dir=kubeconfig_dir,
        # Ansible's own words when it stopped before reaching any host (syntax, inventory).
        detail=_tail(Path(config.artifact_dir) / "stdout") if rc and not hosts else "",
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8").splitlines()[-lines:])
    except OSError:
        return ""


def _job_environment(runner_env: dict[str, Any]) -> dict[str, Any]:
    env = {
        key: value
        for key, value in runner_env.items()
        if key in _PASSED_ENV or key.startswith(_PASSED_PREFIXES)
    }
    # ansible-playbook comes with the kit's Python, which need not be on PATH (.venv/bin/modelyard).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env["ANSIBLE_CONFIG"] = str(ansible_dir() / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(ansible_dir() / "roles")
    # ansible-runner turns host key checking off; the kit's ansible.cfg wants it on.
    env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
    return env


def _progress(on_event: Callable[[str], None]) -> Callable[[dict[str, Any]], bool]:
    def handle(event: dict[str, Any]) -> bool:
        line = describe_event(event)
        if line:
            on_event(line)
        return True  # keep ansible-runner's own record of the event

    return handle


_OUTCOMES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}


def describe_event(event: dict[str, Any]) -> str | None:
    """One progress line for a play, a task result or a failure; None for the rest."""
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_play_start":
        return f"== {data.get('play', '')}"
    if kind not in _OUTCOMES:
        return None
    result = data.get("res") or {}
    outcome = _OUTCOMES[kind]
    if kind == "runner_on_ok" and result.get("changed"):
        outcome = "changed"
    if kind == "runner_on_failed" and data.get("ignore_errors"):
        outcome = "failed (ignored)"
    line = f"  {outcome:<11} {data.get('host', '?')}: {data.get('task', '')}"
    if kind in ("runner_on_failed", "runner_on_unreachable"):
        # A loop fails as a whole ("One or more items failed"): say what each failed item said.
        items = [i["msg"] for i in result.get("results") or [] if i.get("failed") and i.get("msg")]
        for message in items or ([result["msg"]] if result.get("msg") else []):
            line += f"\n              {str(message).strip()}"
    return line


def _summaries(stats: dict[str, dict[str, int]]) -> list[HostSummary]:
    hosts = sorted(set().union(*(set(v) for v in stats.values() if isinstance(v, dict))))
    counts = {key: stats.get(key) or {} for key in ("ok", "changed", "failures", "dark", "skipped")}
    return [
        HostSummary(
            host=host,
            ok=counts["ok"].get(host, 0),
            changed=counts["changed"].get(host, 0),
            failed=counts["failures"].get(host, 0),
            unreachable=counts["dark"].get(host, 0),
            skipped=counts["skipped"].get(host, 0),
        )
        for host in hosts
    ]


def _require_hosts(inventory: Path, env: str) -> None:
    if not inventory.is_file():
        raise PipelineError(f"{inventory}: no inventory for {env!r}; see ansible/README.md.")
    document = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    if inventory.suffix in (".yml", ".yaml") and not _hosts_in(document):
        raise PipelineError(
            f"{inventory}: lists no hosts, so there is nothing to configure for {env!r}. "
            "Add machines under its groups (docker_hosts, jenkins_agents, kubernetes_control_plane, kubernetes_workers)."
        )


def _hosts_in(group: Any) -> bool:
    if not isinstance(group, dict):
        return False
    if group.get("hosts"):
        return True
    children = group.get("children") or {}
    nested = group.get("all") if "all" in group else None
    return _hosts_in(nested) or any(_hosts_in(child) for child in children.values())


def _project_path(path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else project_root() / candidate


def _read_ca(environment: Environment, ca_file: str) -> str:
    path = _project_path(ca_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{environment.path}: modelyard:hosts.registry.caFile {ca_file!r} cannot be read "
            f"({exc.strerror}); point it at the registry CA's PEM file."
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(
            f"{environment.path}: modelyard:hosts.registry.caFile {ca_file!r} is not a PEM "
            "certificate; point it at the registry CA's PEM file."
        )
    return text
