"""Every role applied over SSH to systemd hosts in Docker, then checked as a user would."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
import yaml
from modelyard.infra.pinned_tools import pinned_versions

from tests.ansible.conftest import Configured
from tests.ansible.lab import SENTINEL, LabHost, ssh

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
    for host in ("platform", "k3s"):
        row = re.search(rf"│ {host}\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │", out)
        assert row, f"no summary row for {host}:\n{out[-3000:]}"
        ok, changed, failed, unreachable = map(int, row.groups())
        assert ok > 0 and changed > 0 and failed == 0 and unreachable == 0
    assert "configured" in out


def test_second_run_changes_nothing(configured: Configured) -> None:
    assert configured.second.rc == 0, configured.second.output[-4000:]
    assert configured.second.changed_tasks == [], "\n".join(configured.second.changed_tasks)
    assert set(configured.second.hosts) == {"platform", "k3s"}
    assert all(counts["changed"] == 0 for counts in configured.second.hosts.values())


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("platform", "ssh"),
        ("platform", "nftables"),
        ("platform", "prometheus-node-exporter"),
        ("platform", "docker"),
        ("k3s", "ssh"),
        ("k3s", "nftables"),
        ("k3s", "prometheus-node-exporter"),
        ("k3s", "k3s"),
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
    config = lab.hosts["k3s"].sh("apt-config dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert "label=Debian-Security" in config
    assert (
        lab.hosts["k3s"].sh("systemctl is-enabled apt-daily-upgrade.timer").stdout.strip()
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
        lab.hosts["k3s"]
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
    platform, k3s = lab.hosts["platform"], lab.hosts["k3s"]
    # Listeners on an unlisted port and on the environment's extra port.
    for port in (8081, 8443):
        platform.sh(f"systemd-run --unit probe-{port} python3 -m http.server {port}")
    try:
        platform.sh(
            "for i in $(seq 50); do ss -Hltn | grep -q ':8443 ' && exit 0; sleep 0.1; done; exit 1"
        )
        assert _reachable(k3s, "platform", 22)
        assert _reachable(k3s, "platform", 9100)
        assert _reachable(k3s, "platform", 8443)  # modelyard:hosts.firewall.extraTcpPorts
        assert not _reachable(k3s, "platform", 8081)
        assert _reachable(platform, "k3s", 6443) is False  # nothing listens there (stand-in)
        ruleset = k3s.sh("nft list table inet modelyard").stdout
        assert "policy drop" in ruleset
        assert re.search(r"6443", ruleset) and re.search(r"8472", ruleset)
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


def test_k3s_node_files_unit_and_kubeconfig(configured: Configured) -> None:
    lab = configured.lab
    host = lab.hosts["k3s"]
    binary = host.sh("sha256sum /usr/local/bin/k3s").stdout.split()[0]
    assert binary == lab.artifact_sha256
    assert mode_owner(host, "/usr/local/bin/k3s") == "755 root:root"
    assert mode_owner(host, "/etc/rancher/k3s/token") == "600 root:root"
    assert host.sh("cat /etc/rancher/k3s/token").stdout.strip() == SENTINEL
    config = yaml.safe_load(host.sh("cat /etc/rancher/k3s/config.yaml").stdout)
    assert config["token-file"] == "/etc/rancher/k3s/token"
    assert config["tls-san"] == ["k3s"] and config["write-kubeconfig-mode"] == "0600"
    registries = yaml.safe_load(host.sh("cat /etc/rancher/k3s/registries.yaml").stdout)
    mirror = "registry.test.internal:5000"
    assert registries["mirrors"][mirror]["endpoint"] == [f"https://{mirror}"]
    assert registries["configs"][mirror]["tls"]["ca_file"] == "/etc/rancher/k3s/registry-ca.crt"
    assert host.sh("cat /etc/rancher/k3s/registry-ca.crt").stdout == lab.registry_ca
    unit = host.sh("systemctl show k3s -p Type -p ExecStart -p Delegate -p KillMode").stdout
    assert "Type=notify" in unit and "/usr/local/bin/k3s server" in unit and "Delegate=yes" in unit
    fetched = lab.state / "ansible" / "staging" / "kubeconfig" / "k3s.yaml"
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o600
    kubeconfig = yaml.safe_load(fetched.read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://k3s:6443"


def test_secrets_stay_out_of_output_and_artifacts(configured: Configured) -> None:
    lab = configured.lab
    assert SENTINEL not in configured.first.output
    assert SENTINEL not in configured.second.output
    leaks = [
        path
        for path in lab.state.rglob("*")
        if path.is_file() and SENTINEL.encode() in path.read_bytes()
    ]
    assert leaks == []
    assert any(lab.state.rglob("job_events/*.json"))  # the artifacts were searched


def test_a_wrong_k3s_checksum_fails_closed(configured: Configured, tmp_path: Path) -> None:
    """A tampered artifact is refused before it reaches the host; the installed binary stays."""
    lab = configured.lab
    tampered = tmp_path / "k3s"
    tampered.write_bytes(lab.artifact.read_bytes() + b"\n# tampered\n")
    env_file = lab.environments / "Pulumi.staging.yaml"
    original = env_file.read_text()
    document = yaml.safe_load(original)
    document["config"]["modelyard:hosts"]["k3s"]["artifact"] = str(tampered)
    env_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        run = lab.cli("--limit", "k3s", "--tags", "k3s_node")
    finally:
        env_file.write_text(original)
    output = run.output
    assert run.rc == 1, output
    tampered_sha = hashlib.sha256(tampered.read_bytes()).hexdigest()
    message = " ".join(output.split())
    assert f"sha256 {tampered_sha} is not the pinned {lab.artifact_sha256}" in message
    assert "Nothing was installed" in message
    assert re.search(r"│ k3s\s+│\s+\d+ │\s+0 │\s+1 │", output)  # failed, nothing changed
    host = lab.hosts["k3s"]
    assert host.sh("sha256sum /usr/local/bin/k3s").stdout.split()[0] == lab.artifact_sha256
    assert host.sh("systemctl is-active k3s").stdout.strip() == "active"


def test_a_download_not_matching_the_release_sums_fails_closed(configured: Configured) -> None:
    """The download path: a mirror whose binary does not match its sha256sum file is refused."""
    lab = configured.lab
    host = lab.hosts["k3s"]
    version = "v1.31.4+k3s1"
    release = f"/srv/mirror/{version}"
    # A release mirror on the host's loopback: sums of one build, binary of another.
    host.sh(
        f"mkdir -p '{release}' && cd '{release}' && printf 'other build\\n' > k3s && "
        "sha256sum k3s > sha256sum-amd64.txt && printf 'tampered\\n' >> k3s && "
        "systemd-run --unit k3s-mirror python3 -m http.server 8099 --bind 127.0.0.1 "
        "--directory /srv/mirror && "
        "for i in $(seq 50); do ss -Hltn | grep -q ':8099 ' && exit 0; sleep 0.1; done; exit 1"
    )
    env_file = lab.environments / "Pulumi.staging.yaml"
    original = env_file.read_text()
    document = yaml.safe_load(original)
    k3s = document["config"]["modelyard:hosts"]["k3s"]
    del k3s["artifact"], k3s["sha256"]  # download, checked against the release's sums file
    k3s["releaseUrl"] = "http://127.0.0.1:8099"
    env_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        run = lab.cli("--limit", "k3s", "--tags", "k3s_node")
    finally:
        env_file.write_text(original)
        host.sh("systemctl stop k3s-mirror", check=False)
    message = " ".join(run.output.split())
    assert run.rc == 1, run.output
    assert "Download the pinned k3s release and verify its checksum" in message
    assert "did not match" in message  # get_url's checksum verdict
    assert host.sh("sha256sum /usr/local/bin/k3s").stdout.split()[0] == lab.artifact_sha256
    assert host.sh("systemctl is-active k3s").stdout.strip() == "active"
