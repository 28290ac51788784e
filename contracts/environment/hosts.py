"""What the environment tells Ansible about the machines the platform runs on (`modelyard:hosts`).

`modelyard configure ENV` turns these settings into the roles' variables; the inventory under
ansible/inventories/ENV only says which machines exist and how to reach them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from modelyard.contracts.environment.base import SecretValue, Section
from pydantic import Field

Port = Annotated[int, Field(ge=1, le=65535)]


class RegistryTrust(Section):
    # host:port as image names spell it, e.g. registry.example.internal:5000
    address: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
    # PEM of the CA that signed the registry's certificate, relative to the project root.
    ca_file: str | None = None


class K3sSettings(Section):
    version: str = Field(default="v1.31.4+k3s1", pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
    # Pinned sha256 of the k3s binary; without it the release's published sums file is used.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # A mirror laid out like GitHub's release downloads (VERSION/k3s, VERSION/sha256sum-amd64.txt).
    release_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/]$")
    # Air-gapped sites: a k3s binary already on the machine running `modelyard configure`.
    artifact: str | None = None
    # The cluster join token; its plain value comes from MODELYARD_SECRET_HOSTS_K3S_TOKEN at run time.
    token: SecretValue | None = None
    # The address agents join and the fetched kubeconfig points at (default: first server).
    server_address: str | None = None


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
    k3s: K3sSettings = K3sSettings()
    node_exporter_port: Port = 9100
    log_max_size: str = Field(default="10m", pattern=r"^[0-9]+[kmg]$")
    log_max_files: int = Field(default=3, ge=1, le=100)
    unattended_upgrades: Literal["security", "off"] = "security"
