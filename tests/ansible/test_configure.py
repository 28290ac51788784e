"""`modelyard configure` without hosts: settings mapping, refusals, progress lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from modelyard.contracts.environment import ConfigError, load_environment
from modelyard.pipelines.configure import configure, describe_event, role_variables
from modelyard.pipelines.errors import PipelineError

from tests.conftest import REPO


def _edit_hosts(environments: Path, env: str, **hosts: object) -> None:
    path = environments / f"Pulumi.{env}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["modelyard:hosts"].update(hosts)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_environment_settings_become_role_variables(environments: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    _edit_hosts(
        environments,
        "production",
        registry={"address": "registry.example.internal:5000", "caFile": str(ca)},
        firewall={"extraTcpPorts": [8443], "extraUdpPorts": [51820]},
        kubernetes={
            "version": "v1.34.5",
            "releaseUrl": "https://mirror.example.internal/k8s",
            "controllerManagerArgs": {"node-monitor-grace-period": "20s"},
        },
    )
    variables = role_variables(load_environment("production"), tmp_path / "kube")
    assert variables["docker_host_registry"] == "registry.example.internal:5000"
    assert variables["docker_host_registry_ca"] == ca.read_text()
    assert variables["jenkins_agent_registry_ca"] == ca.read_text()
    assert variables["kubernetes_node_registry"] == "registry.example.internal:5000"
    assert variables["base_firewall_tcp_ports"] == [8443]
    assert variables["base_firewall_udp_ports"] == [51820]
    assert variables["base_time_servers"][0] == "0.debian.pool.ntp.org"
    assert variables["kubernetes_node_version"] == "v1.34.5"
    assert variables["kubernetes_node_release_base_url"] == "https://mirror.example.internal/k8s"
    assert variables["kubernetes_node_kubeconfig_dir"] == str(tmp_path / "kube")
    assert variables["kubernetes_node_controller_manager_args"] == {
        "node-monitor-grace-period": "20s"
    }
    # Every variable belongs to a role: its name starts with the role's.
    roles = [p.name for p in (REPO / "ansible" / "roles").iterdir()]
    assert all(any(name.startswith(f"{role}_") for role in roles) for name in variables)


def test_a_registry_ca_that_is_not_a_certificate_is_refused(
    environments: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    _edit_hosts(environments, "staging", registry={"address": "r.example:5000", "caFile": str(bad)})
    with pytest.raises(ConfigError, match=r"hosts\.registry\.caFile .* is not a PEM certificate"):
        role_variables(load_environment("staging"), tmp_path)


def test_an_image_archive_without_its_checksum_is_refused_naming_the_key(
    environments: Path,
) -> None:
    _edit_hosts(environments, "staging", kubernetes={"imageArchives": [{"path": "etcd.tar"}]})
    with pytest.raises(
        ConfigError, match=r"modelyard:hosts\.kubernetes\.imageArchives\[0\]\.sha256: required"
    ):
        load_environment("staging")


def test_local_has_no_hosts_and_the_cli_says_so(environments: Path) -> None:
    with pytest.raises(PipelineError, match="lists no hosts"):
        configure("local")
    run = subprocess.run(
        [str(REPO / ".venv/bin/modelyard"), "configure", "local"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "lists no hosts" in run.stderr and "Traceback" not in run.stderr


def test_progress_lines_name_outcome_host_and_task() -> None:
    changed = {
        "event": "runner_on_ok",
        "event_data": {"host": "h1", "task": "Install chrony", "res": {"changed": True}},
    }
    failed = {
        "event": "runner_on_failed",
        "event_data": {"host": "h2", "task": "Join with kubeadm", "res": {"msg": "boom"}},
    }
    assert describe_event(changed) == "  changed     h1: Install chrony"
    assert describe_event(failed) == "  FAILED      h2: Join with kubeadm\n              boom"
    looped = {
        "event": "runner_on_failed",
        "event_data": {"host": "w1", "task": "Refuse a wrong checksum", "res": {
            "msg": "One or more items failed",
            "results": [{"failed": False, "msg": "All assertions passed"},
                        {"failed": True, "msg": "kubelet: sha256 abc is not the pinned def"}],
        }},
    }  # fmt: skip
    assert describe_event(looped) == (
        "  FAILED      w1: Refuse a wrong checksum\n"
        "              kubelet: sha256 abc is not the pinned def"
    )
    assert describe_event({"event": "verbose", "event_data": {}}) is None
