"""The kubernetes_node role on two hosts: a kubeadm cluster formed over SSH by `modelyard
configure`, used from this machine through the kubeconfig it fetched, as Pulumi would."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from modelyard.contracts.digests import file_digest
from modelyard.infra.local_cluster.binaries import Binaries

from tests.ansible.conftest import Configured
from tests.ansible.lab import Lab, LabHost

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(1800),
]


def kubectl(lab: Lab, binaries: Binaries, *args: str) -> str:
    done = subprocess.run(
        [str(binaries.kubectl), "--kubeconfig", str(lab.kubeconfig), *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_the_nodes_form_one_cluster_reached_through_the_fetched_kubeconfig(
    configured: Configured, cluster_tools: Binaries
) -> None:
    lab = configured.lab
    assert stat.S_IMODE(lab.kubeconfig.stat().st_mode) == 0o600
    server = yaml.safe_load(lab.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://127.0.0.1:{lab.api_port}"  # the certificate names that address
    nodes = json.loads(kubectl(lab, cluster_tools, "get", "nodes", "-o", "json"))["items"]
    ready = {
        n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"]
                                    if c["type"] == "Ready")
        for n in nodes
    }  # fmt: skip
    assert ready == {"cp": "True", "w1": "True"}
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert "node-role.kubernetes.io/control-plane" in by_name["cp"]["metadata"]["labels"]
    assert by_name["w1"]["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    # The control plane keeps its taint: workloads go to the workers.
    taints = by_name["cp"]["spec"].get("taints", [])
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in taints


def test_pods_on_a_worker_reach_the_api_and_are_reached_from_other_nodes(
    configured: Configured, cluster_tools: Binaries
) -> None:
    """CoreDNS moved to the worker is Ready only once it reads the API server on the control
    plane through the kubernetes Service; the control-plane host reaches it by its pod address
    (the route to the worker's pod range) and through the kube-dns Service (kube-proxy)."""
    lab = configured.lab
    kubectl(
        lab,
        cluster_tools,
        "-n",
        "kube-system",
        "patch",
        "deployment",
        "coredns",
        "-p",
        '{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"w1"}}}}}',
    )
    kubectl(lab, cluster_tools, "-n", "kube-system", "rollout", "status", "deployment/coredns",
            "--timeout=180s")  # fmt: skip
    pods = json.loads(kubectl(lab, cluster_tools, "-n", "kube-system", "get", "pods", "-l",
                              "k8s-app=kube-dns", "-o", "json"))["items"]  # fmt: skip
    running = [
        p
        for p in pods
        if p["status"]["phase"] == "Running" and "deletionTimestamp" not in p["metadata"]
    ]  # not the old ones, terminating
    assert running and {p["spec"]["nodeName"] for p in running} == {"w1"}
    cp = lab.hosts["cp"]
    for pod in running:
        assert pod["status"]["podIP"].startswith("10.244.1.")  # w1's range: 2nd in the inventory
        assert _get(cp, f"http://{pod['status']['podIP']}:8080/health") == "OK"
    service = json.loads(kubectl(lab, cluster_tools, "-n", "kube-system", "get", "service",
                                 "kube-dns", "-o", "json"))  # fmt: skip
    metrics = _get(cp, f"http://{service['spec']['clusterIP']}:9153/metrics")
    assert "coredns_build_info" in metrics


def _get(host: LabHost, url: str) -> str:
    return host.sh(
        'python3 -c "import urllib.request; '
        f"print(urllib.request.urlopen('{url}', timeout=5).read().decode())\""
    ).stdout.strip()


def test_node_files_units_and_registry_trust(
    configured: Configured, cluster_tools: Binaries
) -> None:
    lab = configured.lab
    for name in ("cp", "w1"):
        host = lab.hosts[name]
        for program in ("kubeadm", "kubelet", "kubectl"):
            installed = host.sh(f"sha256sum /usr/local/bin/{program}").stdout.split()[0]
            assert installed == file_digest(cluster_tools.kube(program))
        folder = "/etc/containerd/certs.d/registry.test.internal:5000"
        assert host.sh(f"cat '{folder}/ca.crt'").stdout == lab.registry_ca
        assert 'server = "https://registry.test.internal:5000"' in host.sh(
            f"cat '{folder}/hosts.toml'").stdout  # fmt: skip
        # The join configuration carried a bootstrap token: it is gone after the join.
        assert host.sh("test -e /etc/kubernetes/kubeadm-join.yaml", check=False).returncode == 1
    routes = lab.hosts["cp"].sh("ip route").stdout
    assert re.search(r"10\.244\.1\.0/24 via 10\.251\.\d+\.11", routes), routes
    assert mode_owner(lab.hosts["cp"], "/etc/kubernetes/kubeadm.yaml") == "600 root:root"


def mode_owner(host: LabHost, path: str) -> str:
    return host.sh(f"stat -c '%a %U:%G' {path}").stdout.strip()


def test_a_wrong_artifact_checksum_fails_closed(
    configured: Configured, cluster_tools: Binaries, tmp_path: Path
) -> None:
    """A tampered kubelet is refused on this machine before anything reaches a node."""
    lab = configured.lab
    artifacts = tmp_path / "artifacts"
    shutil.copytree(cluster_tools.kubernetes, artifacts)
    with (artifacts / "kubelet").open("ab") as kubelet:
        kubelet.write(b"\n# tampered\n")
    pinned = file_digest(cluster_tools.kube("kubelet"))
    run = _with_settings(lab, {"artifacts": str(artifacts)}, "--limit", "w1")
    message = " ".join(run.output.split())
    assert run.rc == 1, run.output
    tampered = file_digest(artifacts / "kubelet")
    assert f"kubelet: sha256 {tampered} is not the pinned {pinned}" in message, run.output[-4000:]
    assert "Nothing was installed" in message
    assert re.search(r"│ w1\s+│\s+\d+ │\s+0 │\s+1 │", run.output)  # failed, nothing changed
    host = lab.hosts["w1"]
    assert host.sh("sha256sum /usr/local/bin/kubelet").stdout.split()[0] == pinned
    assert host.sh("systemctl is-active kubelet").stdout.strip() == "active"


def test_a_download_not_matching_the_release_checksum_fails_closed(
    configured: Configured, cluster_tools: Binaries
) -> None:
    """The download path: a mirror whose kubeadm does not match its published .sha256."""
    lab = configured.lab
    host = lab.hosts["w1"]
    release = "/srv/mirror/v1.34.4/bin/linux/amd64"
    host.sh(
        f"mkdir -p {release} && cd {release} && for p in kubeadm kubelet kubectl; do "
        "printf 'other build\\n' > $p && sha256sum $p | cut -d' ' -f1 > $p.sha256 && "
        "printf 'tampered\\n' >> $p; done && "
        "systemd-run --unit release-mirror python3 -m http.server 8099 --bind 127.0.0.1 "
        "--directory /srv/mirror && "
        "for i in $(seq 50); do ss -Hltn | grep -q ':8099 ' && exit 0; sleep 0.1; done; exit 1"
    )
    try:
        run = _with_settings(lab, {"artifacts": None, "sha256": {},
                                   "releaseUrl": "http://127.0.0.1:8099"}, "--limit", "w1")  # fmt: skip
    finally:
        host.sh("systemctl stop release-mirror", check=False)
    message = " ".join(run.output.split())
    assert run.rc == 1, run.output
    assert "Download the pinned release and verify its checksums" in message
    assert "did not match" in message, run.output[-4000:]  # get_url's checksum verdict
    pinned = file_digest(cluster_tools.kube("kubeadm"))
    assert host.sh("sha256sum /usr/local/bin/kubeadm").stdout.split()[0] == pinned


def _with_settings(lab: Lab, changes: dict[str, object], *args: str):  # type: ignore[no-untyped-def]
    """`modelyard configure` with modelyard:hosts.kubernetes changed, then the file restored."""
    env_file = lab.environments / "Pulumi.staging.yaml"
    original = env_file.read_text()
    document = yaml.safe_load(original)
    settings = document["config"]["modelyard:hosts"]["kubernetes"]
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    env_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        return lab.cli(*args, "--tags", "kubernetes_node")
    finally:
        env_file.write_text(original)
