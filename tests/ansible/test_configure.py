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
        k3s={"version": "v1.31.4+k3s1", "releaseUrl": "https://mirror.example.internal/k3s"},
    )
    variables = role_variables(load_environment("production"), tmp_path / "kube")
    assert variables["docker_host_registry"] == "registry.example.internal:5000"
    assert variables["docker_host_registry_ca"] == ca.read_text()
    assert variables["jenkins_agent_registry_ca"] == ca.read_text()
    assert variables["k3s_node_registry"] == "registry.example.internal:5000"
    assert variables["base_firewall_tcp_ports"] == [8443]
    assert variables["base_firewall_udp_ports"] == [51820]
    assert variables["base_time_servers"][0] == "0.debian.pool.ntp.org"
    assert variables["k3s_node_version"] == "v1.31.4+k3s1"
    assert variables["k3s_node_release_base_url"] == "https://mirror.example.internal/k3s"
    assert variables["k3s_node_kubeconfig_dir"] == str(tmp_path / "kube")
    # Every variable belongs to a role: its name starts with the role's.
    roles = [p.name for p in (REPO / "ansible" / "roles").iterdir()]
    assert all(any(name.startswith(f"{role}_") for role in roles) for name in variables)
    # The secret never becomes a variable.
    assert not any("token" in name for name in variables)


def test_a_registry_ca_that_is_not_a_certificate_is_refused(
    environments: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    _edit_hosts(environments, "staging", registry={"address": "r.example:5000", "caFile": str(bad)})
    with pytest.raises(ConfigError, match=r"hosts\.registry\.caFile .* is not a PEM certificate"):
        role_variables(load_environment("staging"), tmp_path)


def test_a_plain_text_k3s_token_is_refused(environments: Path) -> None:
    _edit_hosts(environments, "staging", k3s={"token": "plain-text"})
    with pytest.raises(
        ConfigError, match=r"modelyard:hosts\.k3s\.token: secrets must be Pulumi secrets"
    ):
        load_environment("staging")


def test_the_k3s_token_must_be_given_at_run_time(
    environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELYARD_SECRET_HOSTS_K3S_TOKEN", raising=False)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    somewhere.example.internal:\n")
    with pytest.raises(ConfigError, match="MODELYARD_SECRET_HOSTS_K3S_TOKEN"):
        configure("staging", inventory=inventory)


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
        "event_data": {"host": "h2", "task": "Start k3s", "res": {"msg": "boom"}},
    }
    assert describe_event(changed) == "  changed     h1: Install chrony"
    assert describe_event(failed) == "  FAILED      h2: Start k3s\n              boom"
    assert describe_event({"event": "verbose", "event_data": {}}) is None
