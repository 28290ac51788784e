"""The cluster's certificates, kubeconfigs and the configuration files of its programs.

Certificates and kubeconfigs come from kubeadm's own phases (offline, the same layout kubeadm
clusters have); the rest is the upstream configuration types written as files.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from modelyard.contracts.atomic_file import write_atomic
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import (
    API_PORT,
    BRIDGE,
    CLUSTER_NAME,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_SUBNET,
    SERVICE_SUBNET,
    ClusterPaths,
)

KUBEPROXY_USER = "system:kube-proxy"  # bound to system:node-proxier by the API server itself


def write_all(paths: ClusterPaths, binaries: Binaries, node_ip: str) -> None:
    """Everything the programs read, written again on every `up` (certificates only once)."""
    for folder in (paths.config, paths.cni_config, paths.registry_hosts, paths.logs):
        folder.mkdir(parents=True, exist_ok=True)
    kubeadm_config = paths.config / "kubeadm.yaml"
    _write_yaml(kubeadm_config, _kubeadm_documents(paths, binaries, node_ip))
    if not (paths.admin_kubeconfig.is_file() and (paths.kubeconfigs / "kube-proxy.conf").is_file()):
        _make_certificates(paths, binaries, kubeadm_config)
    _write_text(paths.config / "containerd.toml", containerd_config(paths, binaries))
    _write_text(paths.cni_config / "10-modelyard.conflist", json.dumps(cni_config(paths), indent=2))
    _write_yaml(paths.config / "kubelet.yaml", [kubelet_config(paths)])
    _write_yaml(paths.config / "kube-proxy.yaml", [kube_proxy_config(paths, node_ip)])


def _kubeadm_documents(paths: ClusterPaths, binaries: Binaries, node_ip: str) -> list[Any]:
    return [
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": node_ip, "bindPort": API_PORT},
            "nodeRegistration": {"name": NODE_NAME},
        },
        {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "clusterName": CLUSTER_NAME,
            "kubernetesVersion": f"v{binaries.kubernetes_version}",
            "certificatesDir": str(paths.pki),
            # Every kubeconfig talks to the API server over loopback.
            "controlPlaneEndpoint": f"127.0.0.1:{API_PORT}",
            "networking": {"serviceSubnet": SERVICE_SUBNET, "podSubnet": POD_SUBNET},
            "apiServer": {"certSANs": ["127.0.0.1", "localhost", node_ip]},
        },
    ]


def _make_certificates(paths: ClusterPaths, binaries: Binaries, kubeadm_config: Path) -> None:
    kubeadm = str(binaries.kube("kubeadm"))
    paths.kubeconfigs.mkdir(parents=True, exist_ok=True)
    for command in (
        [kubeadm, "init", "phase", "certs", "all", "--config", str(kubeadm_config)],
        [kubeadm, "init", "phase", "kubeconfig", "all", "--config", str(kubeadm_config),
         "--kubeconfig-dir", str(paths.kubeconfigs)],
    ):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True)
    proxy = subprocess.run(
        [kubeadm, "kubeconfig", "user", "--config", str(kubeadm_config),
         "--client-name", KUBEPROXY_USER],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    write_atomic(
        paths.kubeconfigs / "kube-proxy.conf", proxy.stdout
    )  # 0600, as kubeadm writes its own


def containerd_config(paths: ClusterPaths, binaries: Binaries) -> str:
    """containerd 1.6 (Debian's), a daemon of its own beside Docker's: own root, state and socket.
    Root here lacks CAP_SYS_RESOURCE, so containers never get a lower OOM score than the daemon."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f'root = "{paths.containerd_root}"',
        f'state = "{paths.run / "containerd"}"',
        "[grpc]",
        f'  address = "{paths.containerd_socket}"',
        f"[{cri}]",
        f'  sandbox_image = "{PAUSE_IMAGE.format(key=binaries.pause_key)}"',
        "  restrict_oom_score_adj = true",
        "  disable_apparmor = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        f'  BinaryName = "{binaries.debian["runc"]}"',
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{binaries.cni}"',
        f'  conf_dir = "{paths.cni_config}"',
        f"[{cri}.registry]",
        f'  config_path = "{paths.registry_hosts}"',
        "",
    ])  # fmt: skip


def cni_config(paths: ClusterPaths) -> dict[str, Any]:
    """One bridge with NAT to the outside, hairpin for a pod reaching itself through a Service."""
    return {
        "cniVersion": "0.4.0",
        "name": CLUSTER_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.root / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: ClusterPaths) -> dict[str, Any]:
    """The kubelet on this machine: cgroup v1 through cgroupfs, a root without CAP_SYS_RESOURCE
    (KubeletInUserNamespace tolerates the kernel settings it may not change), swap tolerated.
    Pods are synced every 10 s (upstream: 1 min), so an updated Secret, such as rotated serving
    tokens, reaches the mounted files within seconds on this one-node cluster."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(paths.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "failSwapOn": False,
        "syncFrequency": "10s",
        "featureGates": {"KubeletInUserNamespace": True},
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "kernelMemcgNotification": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "localStorageCapacityIsolation": True,
    }  # fmt: skip


def kube_proxy_config(paths: ClusterPaths, node_ip: str) -> dict[str, Any]:
    """iptables mode; NodePorts answer on loopback too (tests reach Services at 127.0.0.1);
    conntrack limits left as the kernel has them (root may not change them here)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(paths.kubeconfigs / "kube-proxy.conf")},
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{node_ip}/32", "127.0.0.0/8"],
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def _write_yaml(path: Path, documents: list[Any]) -> None:
    _write_text(path, yaml.safe_dump_all(documents, sort_keys=False))


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)
