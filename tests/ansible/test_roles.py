"""Every role applied over SSH to systemd hosts in Docker, then checked as a user would."""

from __future__ import annotations

import re

import pytest
import yaml
from modelyard.infra.pinned_tools import pinned_versions

from tests.ansible.conftest import Configured
from tests.ansible.lab import LabHost, ssh

# The session's first test waits for both runs of the lab (a few minutes; more on a busy machine).
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(1800),
]


def mode_owner(host: LabHost, path: str) -> str:
    return host.sh(f"stat -c '%a %U:%G' {path}").stdout.strip()


def test_first_run_configures_every_host_and_reports_per_host(configured: Configured) -> None:
    out = configured.first.output
    assert "== Harden every host and export its metrics" in out  # live progress: plays
    assert re.search(r"changed\s+platform: Install the Docker engine", out)  # and task results
    for host in ("platform", "cp", "w1"):
        row = re.search(rf"│ {host}\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │", out)
        assert row, f"no summary row for {host}:\n{out[-3000:]}"
        ok, changed, failed, unreachable = map(int, row.groups())
        assert ok > 0 and changed > 0 and failed == 0 and unreachable == 0
    assert "configured" in out


def test_second_run_changes_nothing(configured: Configured) -> None:
    assert configured.second.rc == 0, configured.second.output[-4000:]
    assert configured.second.changed_tasks == [], "\n".join(configured.second.changed_tasks)
    assert set(configured.second.hosts) == {"platform", "cp", "w1"}
    assert all(counts["changed"] == 0 for counts in configured.second.hosts.values())


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("platform", "ssh"),
        ("platform", "nftables"),
        ("platform", "prometheus-node-exporter"),
        ("platform", "docker"),
        ("cp", "ssh"),
        ("cp", "nftables"),
        ("cp", "prometheus-node-exporter"),
        ("cp", "containerd"),
        ("cp", "kubelet"),
        ("w1", "kubelet"),
        ("w1", "modelyard-pod-routes"),
    ],
)
def test_services_are_active_and_enabled(configured: Configured, host: str, service: str) -> None:
    lab = configured.lab
    target = lab.hosts[host]
    assert target.sh(f"systemctl is-enabled {service}").stdout.strip() == "enabled"
    assert target.sh(f"systemctl is-active {service}", check=False).stdout.strip() == "active"


def test_time_sync_is_installed_enabled_and_left_to_the_container_host(
    configured: Configured,
) -> None:
    lab = configured.lab
    host = lab.hosts["platform"]
    assert host.sh("systemctl is-enabled chrony").stdout.strip() == "enabled"
    assert "pool 0.debian.pool.ntp.org iburst" in host.sh("cat /etc/chrony/chrony.conf").stdout
    # A container cannot set the clock (no CAP_SYS_TIME): the role does not start chrony there.
    assert host.sh("systemctl is-active chrony", check=False).stdout.strip() == "inactive"


def test_unattended_security_upgrades_are_switched_on(configured: Configured) -> None:
    lab = configured.lab
    config = lab.hosts["w1"].sh("apt-config dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert "label=Debian-Security" in config
    assert (
        lab.hosts["w1"].sh("systemctl is-enabled apt-daily-upgrade.timer").stdout.strip()
        == "enabled"
    )


def test_ports_listen(configured: Configured) -> None:
    lab = configured.lab
    for host in lab.hosts.values():
        listening = host.sh("ss -Hltn").stdout
        assert re.search(r":22\s", listening), listening
        assert re.search(r":9100\s", listening), listening


def test_node_exporter_serves_host_metrics_through_the_firewall(configured: Configured) -> None:
    lab = configured.lab
    # Scraped from the other host, as Prometheus would, so the firewall is in the path.
    metrics = (
        lab.hosts["w1"]
        .sh(
            'python3 -c "import urllib.request; '
            "print(urllib.request.urlopen('http://platform:9100/metrics', timeout=5).read().decode())\""
        )
        .stdout
    )
    for metric in (
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
    ):
        assert metric in metrics


def _reachable(source: LabHost, target: str, port: int) -> bool:
    probe = source.sh(
        'python3 -c "import socket; socket.create_connection('
        f"('{target}', {port}), timeout=3).close()\"",
        check=False,
    )
    return probe.returncode == 0


def test_firewall_allows_only_the_ports_the_roles_need(configured: Configured) -> None:
    lab = configured.lab
    platform, node = lab.hosts["platform"], lab.hosts["w1"]
    # Listeners on an unlisted port and on the environment's extra port.
    for port in (8081, 8443):
        platform.sh(f"systemd-run --unit probe-{port} python3 -m http.server {port}")
    try:
        platform.sh(
            "for i in $(seq 50); do ss -Hltn | grep -q ':8443 ' && exit 0; sleep 0.1; done; exit 1"
        )
        assert _reachable(node, "platform", 22)
        assert _reachable(node, "platform", 9100)
        assert _reachable(node, "platform", 8443)  # modelyard:hosts.firewall.extraTcpPorts
        assert not _reachable(node, "platform", 8081)
        assert _reachable(platform, "cp", 6443)  # the API server, opened by kubernetes_node
        assert _reachable(platform, "w1", 10250)  # a worker's kubelet
        assert not _reachable(platform, "cp", 2379)  # etcd listens, for the control plane only
        assert "policy drop" in node.sh("nft list table inet modelyard").stdout
    finally:
        for port in (8081, 8443):
            platform.sh(f"systemctl stop probe-{port}", check=False)


def test_ssh_refuses_passwords_and_root(configured: Configured) -> None:
    lab = configured.lab
    host = lab.hosts["platform"]
    password = ssh(
        host,
        lab.key,
        "true",
        options=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr  # the only method offered
    # Root with a valid key is refused too.
    host.sh("install -d -m 0700 /root/.ssh && cp ~admin/.ssh/authorized_keys /root/.ssh/")
    assert ssh(host, lab.key, "true", user="root").returncode == 255
    assert ssh(host, lab.key, "true").returncode == 0  # the admin's key still works


def test_docker_host_settings_and_deploy_user(configured: Configured) -> None:
    lab = configured.lab
    host = lab.hosts["platform"]
    assert mode_owner(host, "/etc/docker/daemon.json") == "644 root:root"
    daemon = yaml.safe_load(host.sh("cat /etc/docker/daemon.json").stdout)
    assert daemon["live-restore"] is True
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    info = host.sh("docker info --format '{{.LoggingDriver}} {{.LiveRestoreEnabled}}'").stdout
    assert info.split() == ["json-file", "true"]  # the running engine took the settings
    ca = "/etc/docker/certs.d/registry.test.internal:5000/ca.crt"
    assert mode_owner(host, ca) == "644 root:root"
    assert host.sh(f"cat {ca}").stdout == lab.registry_ca
    assert "docker" in host.sh("id -nG deploy").stdout.split()
    assert host.sh("su - deploy -c 'docker version --format {{.Server.Version}}'").stdout.strip()


def test_jenkins_agent_can_build_with_the_hosts_engine(configured: Configured) -> None:
    lab = configured.lab
    host = lab.hosts["platform"]
    server = host.sh("su - jenkins -c 'docker version --format {{.Server.Version}}'")
    assert server.stdout.strip(), server.stderr
    tools = host.sh(
        "su - jenkins -c 'java -version 2>&1; git --version; "
        "python3 -m venv /tmp/venv-check && /tmp/venv-check/bin/python -V'"
    ).stdout
    assert "openjdk" in tools and "git version" in tools and "Python 3" in tools
    assert mode_owner(host, "/var/lib/jenkins-agent/workspace") == "750 jenkins:jenkins"
    keys = "/var/lib/jenkins-agent/.ssh/authorized_keys"
    assert mode_owner(host, keys) == "600 jenkins:jenkins"
    assert host.sh(f"cat {keys}").stdout.strip() == lab.agent_public_key
    bundle = host.sh("cat /etc/ssl/certs/ca-certificates.crt").stdout
    assert lab.registry_ca.strip() in bundle  # the system trust store includes the registry CA


def test_jenkins_agent_has_what_the_pipeline_calls(configured: Configured) -> None:
    """`make setup`, and the pinned Pulumi engine the deploy stages run, as the agent user."""
    host = configured.lab.hosts["platform"]
    pins = pinned_versions()
    make = host.sh("su - jenkins -c 'make --version'").stdout
    assert make.startswith("GNU Make")
    assert host.sh("dpkg-query -W -f '${Status}' libgomp1").stdout == "install ok installed"
    engine = host.sh(
        "su - jenkins -c '. ~/.cache/modelyard/tools/env.sh && pulumi version && pulumi plugin ls'"
    ).stdout
    assert engine.startswith(f"v{pins['PULUMI_VERSION']}")
    assert re.search(
        rf"kubernetes\s+resource\s+{re.escape(pins['PULUMI_KUBERNETES_VERSION'])}", engine
    )
