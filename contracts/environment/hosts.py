"""What the environment tells Ansible about the machines the platform runs on (`modelyard:hosts`).

`modelyard configure ENV` turns these settings into the roles' variables; the inventory under
ansible/inventories/ENV only says which machines exist and how to reach them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from modelyard.contracts.environment.base import Section
from pydantic import Field

Port = Annotated[int, Field(ge=1, le=65535)]


class RegistryTrust(Section):
    # host:port as image names spell it, e.g. registry.example.internal:5000
    address: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
    # PEM of the CA that signed the registry's certificate, relative to the project root.
    ca_file: str | None = None


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
KubernetesProgram = Literal["kubeadm", "kubelet", "kubectl"]


class ImageArchive(Section):
    """An image archive (OCI or `docker save`) imported into every node's containerd."""

    path: str  # on the machine running `modelyard configure`, relative to the project root
    sha256: Sha256
    images: list[str] = Field(min_length=1)  # the names it holds
    control_plane_only: bool = False


class KubernetesSettings(Section):
    """The nodes the kubernetes_node role makes with kubeadm (ansible/roles/kubernetes_node)."""

    version: str = Field(default="v1.34.4", pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+$")
    # Pinned sha256 of each program; without them the release's published NAME.sha256 is used.
    sha256: dict[KubernetesProgram, Sha256] = Field(default_factory=dict)
    # A mirror laid out like dl.k8s.io/release (VERSION/bin/linux/ARCH/kubeadm).
    release_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/]$")
    # Air-gapped sites: a folder holding kubeadm, kubelet and kubectl on the machine running
    # `modelyard configure`; every sha256 is then required.
    artifacts: str | None = None
    # Air-gapped sites: the control plane's images as archives, so kubeadm never pulls.
    image_archives: list[ImageArchive] = Field(default_factory=list)
    image_repository: str = "registry.k8s.io"
    etcd_image_tag: str | None = None
    pod_subnet: str = Field(default="10.244.0.0/16", pattern=r"^[0-9]+\.[0-9]+\.0\.0/16$")
    service_subnet: str = Field(default="10.96.0.0/16", pattern=r"^[0-9.]+/[0-9]+$")
    # bridge: pods on a Linux bridge per node, routed between nodes on one L2 segment;
    # none: the site installs its own CNI.
    cni: Literal["bridge", "none"] = "bridge"
    schedulable_control_plane: bool = False
    # Name servers the cluster DNS forwards other names to (default: each host's resolv.conf).
    upstream_dns: list[str] = Field(default_factory=list)
    cgroup_driver: Literal["systemd", "cgroupfs"] = "systemd"
    # Merged into the kubelet's and kube-proxy's configuration files, and the control plane's
    # flags (name: value), e.g. a shorter node-monitor-grace-period.
    kubelet_config: dict[str, Any] = Field(default_factory=dict)
    kube_proxy_config: dict[str, Any] = Field(default_factory=dict)
    controller_manager_args: dict[str, str] = Field(default_factory=dict)
    api_server_args: dict[str, str] = Field(default_factory=dict)


class Firewall(Section):
    # Ports opened on every host beyond those its roles need (SSH and the roles' own ports).
    extra_tcp_ports: list[Port] = Field(default_factory=list)
    extra_udp_ports: list[Port] = Field(default_factory=list)


class HostsSettings(Section):
    deploy_user: str = Field(default="deploy", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    agent_user: str = Field(default="jenkins", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # The public key the Jenkins controller uses to reach its agents (not a secret).
    agent_authorized_key: str | None = Field(default=None, pattern=r"^(ssh|ecdsa)-[^\s]+ [^\s]+")
    registry: RegistryTrust | None = None
    time_servers: list[str] = Field(default_factory=lambda: ["0.debian.pool.ntp.org"])
    firewall: Firewall = Firewall()
    kubernetes: KubernetesSettings = KubernetesSettings()
    node_exporter_port: Port = 9100
    log_max_size: str = Field(default="10m", pattern=r"^[0-9]+[kmg]$")
    log_max_files: int = Field(default=3, ge=1, le=100)
    unattended_upgrades: Literal["security", "off"] = "security"
