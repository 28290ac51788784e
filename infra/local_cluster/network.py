"""The host side of the pods' network: Docker's FORWARD policy (DROP) lets the pods' bridge
through, and everything the pods' networking left on the host goes when the cluster stops."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import BRIDGE, ClusterPaths

# Docker evaluates DOCKER-USER first and leaves it to users: the one place our rules survive
# Docker's own rule rewrites. Without Docker the FORWARD chain takes them.
_FORWARD_RULES = (["-i", BRIDGE, "-j", "ACCEPT"], ["-o", BRIDGE, "-j", "ACCEPT"])


def _iptables(binaries: Binaries, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries.debian["iptables"]), "-w", *args], capture_output=True, text=True, check=False
    )


def _forward_chain(binaries: Binaries) -> str:
    return "DOCKER-USER" if _iptables(binaries, "-S", "DOCKER-USER").returncode == 0 else "FORWARD"


def allow_pod_forwarding(binaries: Binaries) -> None:
    chain = _forward_chain(binaries)
    for rule in _FORWARD_RULES:
        if _iptables(binaries, "-C", chain, *rule).returncode != 0:
            _iptables(binaries, "-I", chain, *rule)
    # Containers reach each other through Services only with the bridge's traffic seen by iptables.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def remove_host_networking(paths: ClusterPaths, binaries: Binaries) -> None:
    """After the kubelet and containerd are gone: kube-proxy's rules (its own cleanup), the
    sandboxes' NAT chains, the bridge, the address allocations and our forwarding rules."""
    subprocess.run(
        [str(binaries.kube("kube-proxy")), "--cleanup"], capture_output=True, check=False
    )
    chain = _forward_chain(binaries)
    for rule in _FORWARD_RULES:
        while _iptables(binaries, "-D", chain, *rule).returncode == 0:
            pass
    _remove_chains(binaries)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    for namespace in Path("/run/netns").glob("cni-*"):
        subprocess.run(["umount", "-l", str(namespace)], capture_output=True, check=False)
        namespace.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(paths.root / "cni-ipam")], check=False)


def _remove_chains(binaries: Binaries) -> None:
    """What kube-proxy's cleanup leaves: the kubelet's own chains (`KUBE-FIREWALL`, its canaries)
    and the bridge plugin's per-pod NAT chains (`CNI-<hash>`), with every jump into them."""
    for table in ("filter", "nat", "mangle"):
        listed = _iptables(binaries, "-t", table, "-S").stdout.splitlines()
        for line in listed:
            words = shlex.split(line)
            if words[0] == "-A" and not words[1].startswith(_OURS) and _jumps_to_ours(words):
                _iptables(binaries, "-t", table, "-D", *words[1:])
        chains = [line.split()[1] for line in listed if line.startswith(("-N CNI-", "-N KUBE-"))]
        for name in chains:
            _iptables(binaries, "-t", table, "-F", name)
        for name in chains:
            _iptables(binaries, "-t", table, "-X", name)


_OURS = ("CNI-", "KUBE-")


def _jumps_to_ours(words: list[str]) -> bool:
    return "-j" in words and words[words.index("-j") + 1].startswith(_OURS)
