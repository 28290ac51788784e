"""Where and how the platform (Jenkins, image registry, MLflow server) runs for an environment."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from modelyard.contracts.environment.base import SecretValue, Section
from pydantic import Field, field_validator, model_validator

Port = Field(ge=1, le=65535)
_DURATION = re.compile(r"^[1-9][0-9]*[mhd]$")


class DockerTarget(Section):
    """The Docker engine the platform containers run on: this machine's, or a remote host's."""

    # None: the local engine (unix socket). Remote: `ssh://user@host` or `tcp://host:2376`.
    host: str | None = Field(default=None, pattern=r"^(ssh|tcp|unix)://\S+$")
    # The interface published ports bind to: loopback locally, all interfaces on a platform host.
    bind_address: str = "127.0.0.1"
    # The name users and agents reach the platform by (URLs, TLS names, MLflow allowed hosts).
    address: str = Field(default="127.0.0.1", min_length=1)


class Tls(Section):
    """The registry's certificate: generated for the environment, or provided by it."""

    source: Literal["generated", "provided"] = "generated"
    certificate: str | None = None  # PEM, public: the chain clients verify
    key: SecretValue | None = None
    validity_days: int = Field(default=365, ge=1, le=3650)

    @model_validator(mode="after")
    def _provided_needs_pair(self) -> Tls:
        if self.source == "provided" and (not self.certificate or self.key is None):
            raise ValueError(
                "tls.source is `provided`: set tls.certificate (PEM) and tls.key "
                "(`pulumi config set --secret --path modelyard:platform.registry.tls.key ...`)"
            )
        if self.source == "generated" and (self.certificate or self.key is not None):
            raise ValueError("tls.certificate/key are only read when tls.source is `provided`")
        return self


class Registry(Section):
    port: int = Port
    # The name `docker login/push` uses when it differs from the platform host (DNS alias).
    hostname: str | None = Field(default=None, min_length=1)
    username: str = Field(default="modelyard", pattern=r"^[a-z][a-z0-9_-]{2,31}$")
    tls: Tls = Tls()
    # Maintenance mode: pushes and deletes refused. Garbage collection runs only then, because
    # collecting while pushes land can delete layers of an image being pushed.
    read_only: bool = False
    garbage_collect: bool = False

    @model_validator(mode="after")
    def _gc_only_read_only(self) -> Registry:
        if self.garbage_collect and not self.read_only:
            raise ValueError(
                "garbageCollect needs readOnly: true (collecting while pushes land corrupts images)"
            )
        return self


class Postgres(Section):
    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(default="mlflow", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    auth_database: str = Field(default="mlflow_auth", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    user: str = Field(default="mlflow", min_length=1)
    password: SecretValue
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "require"


class MlflowServer(Section):
    port: int = Port
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    postgresql: Postgres | None = None
    admin_username: str = Field(default="admin", min_length=1)
    # What an authenticated user may do with experiments/models someone else created.
    default_permission: Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"] = "READ"
    # Host headers the server answers (DNS-rebinding protection); the platform address is added.
    allowed_hosts: list[str] = Field(default_factory=list)
    workers: int = Field(default=2, ge=1, le=32)

    @model_validator(mode="after")
    def _backend_settings(self) -> MlflowServer:
        if self.backend == "postgresql" and self.postgresql is None:
            raise ValueError("backend is postgresql: add a `postgresql:` block (host, password)")
        if self.backend == "sqlite" and self.postgresql is not None:
            raise ValueError("a `postgresql:` block is set but backend is sqlite: pick one")
        return self


# An SSH public key as sshd and known_hosts spell it: type, base64 blob, no comment.
SSH_PUBLIC_KEY = r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}$"


class JenkinsAgent(Section):
    """A machine Jenkins runs builds on over SSH: one of the `jenkins_agents` hosts of
    ansible/inventories/ENV/hosts.yml, which the jenkins_agent role prepares."""

    host: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
    # The host's SSH host key (its /etc/ssh/ssh_host_ed25519_key.pub without the comment):
    # Jenkins connects only to a machine that proves it holds this key.
    host_key: str = Field(pattern=SSH_PUBLIC_KEY)
    port: int = Field(default=22, ge=1, le=65535)
    executors: int = Field(default=2, ge=1, le=16)


PASSPHRASE_KEY = "modelyard:platform.jenkins.pulumi.passphrase"
# Backends every agent reaches alike, so each build sees what earlier builds deployed: S3 (or an
# S3-compatible store, `?endpoint=...`), Azure Blob, Google Cloud Storage, and Pulumi Cloud or a
# self-hosted Pulumi service (https). Their own credentials (an instance role, ~/.aws, `pulumi
# login`) belong to the agent machines.
SHARED_BACKENDS = ("s3", "azblob", "gs", "https")
_BACKEND_FORMS = (
    "s3://BUCKET[/PREFIX], azblob://CONTAINER[/PREFIX], gs://BUCKET[/PREFIX] or "
    "https://HOST (Pulumi Cloud or a self-hosted Pulumi service)"
)


class JenkinsPulumi(Section):
    """Where the pipeline's deploy stages keep the stacks' state, and the passphrase the stacks'
    secrets are encrypted with: Jenkins gives them to every build (PULUMI_BACKEND_URL on each
    node, the passphrase as the secret-text credential modelyard-pulumi-passphrase)."""

    backend_url: str
    # Whatever the backend, the stacks' secrets provider is the passphrase (their files carry an
    # encryptionsalt; infra/automation.py selects stacks with it), so it is always needed.
    passphrase: SecretValue | None = None

    @field_validator("backend_url")
    @classmethod
    def _shared_backend(cls, url: str) -> str:
        parts = urlsplit(url)
        # First, so no message below echoes a password (the loader hides values near "secret").
        if parts.username or parts.password:
            raise ValueError(
                "must not carry credentials (user:password@): Jenkins sets this URL as a plain "
                "node variable, never as a secret; give the agents the backend's credentials"
            )
        if parts.scheme == "file":
            # A folder on one machine: a build on another agent, or after the agent is rebuilt,
            # would not see what earlier builds deployed and would create it all again.
            raise ValueError(
                "file:// keeps the stacks' state on one agent, which other agents (and that agent "
                f"rebuilt) would not see: use a backend every agent shares, {_BACKEND_FORMS}"
            )
        if parts.scheme not in SHARED_BACKENDS or not parts.hostname:
            raise ValueError(f"must be a backend every agent shares: {_BACKEND_FORMS}")
        if re.search(r"[\s$]", url):  # JCasC would read `${...}` in it as a variable
            raise ValueError("must not contain spaces or `$`")
        return url

    @model_validator(mode="after")
    def _needs_passphrase(self) -> JenkinsPulumi:
        if self.passphrase is None:
            raise ValueError(
                "passphrase is not set: the deploy stages decrypt the stacks' secrets with it. "
                f"`pulumi config set --secret --path {PASSPHRASE_KEY}`"
            )
        return self


class Jenkins(Section):
    # False leaves Jenkins out of the stack: its image needs the Jenkins base image and plugins
    # from the internet (the local stack ships without it until that image can be had).
    enabled: bool = True
    port: int = Port
    agent_port: int = Field(default=50000, ge=1, le=65535)
    admin_username: str = Field(default="admin", min_length=1)
    # Zero on the controller: agents do the work. Only a local environment may allow one.
    executors: int = Field(default=0, ge=0, le=1)
    repository: str = Field(min_length=1)  # the git URL of this repository
    # SCM polling of the multibranch job, next to the webhook (`5m`, `1h`, `1d`).
    scan_interval: str = Field(default="15m", pattern=_DURATION.pattern)
    # Kubeconfig per deployment environment, injected as Jenkins file credentials.
    kubeconfigs: dict[str, SecretValue] = Field(default_factory=dict)
    # Per environment whose model server asks for bearer tokens (modelyard:serving.auth), one of
    # its scoring tokens: the smoke test sends it (credential modelyard-serving-token-ENV).
    serving_tokens: dict[str, SecretValue] = Field(default_factory=dict)
    # The SSH agents builds run on (label `modelyard`), as user modelyard:hosts.agentUser.
    agents: list[JenkinsAgent] = Field(default_factory=list)
    # The key the controller logs in to its agents with; modelyard:hosts.agentAuthorizedKey is
    # its public half, which the jenkins_agent role authorizes.
    agent_private_key: SecretValue | None = None
    # The SSH key the stages that promote or roll back push release commits with (a deploy key
    # with write access to modelyard:promotion.git.remote), the credential modelyard-git.
    git_private_key: SecretValue | None = None
    # The state backend and passphrase of the stacks the deploy stages `pulumi up`.
    pulumi: JenkinsPulumi | None = None

    @model_validator(mode="after")
    def _deploys_need_pulumi(self) -> Jenkins:
        # Without a shared backend each build would start from an empty state in its workspace
        # (infra/automation.py's default) and create the environment all over again.
        if self.enabled and self.pulumi is None:
            raise ValueError(
                "Jenkins is enabled but modelyard:platform.jenkins.pulumi is not set: its deploy "
                "stages run `pulumi up`. Add pulumi.backendUrl (a backend every agent shares: "
                f"{_BACKEND_FORMS}) and pulumi.passphrase (`pulumi config set --secret --path "
                f"{PASSPHRASE_KEY}`)"
            )
        return self

    @model_validator(mode="after")
    def _agents_need_a_key(self) -> Jenkins:
        hosts = [agent.host for agent in self.agents]
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"agents lists a host twice: {hosts}")
        if self.agents and self.agent_private_key is None:
            raise ValueError(
                "agents are set but agentPrivateKey is not: `pulumi config set --secret --path "
                "modelyard:platform.jenkins.agentPrivateKey < KEYFILE`"
            )
        return self


def registry_host(target: DockerTarget, settings: Registry) -> str:
    return settings.hostname or target.address


def registry_address(target: DockerTarget, settings: Registry) -> str:
    """What `docker login/push` names: host, plus the port unless it is 443."""
    host = registry_host(target, settings)
    return host if settings.port == 443 else f"{host}:{settings.port}"


class PlatformSettings(Section):
    docker: DockerTarget = DockerTarget()
    registry: Registry
    mlflow: MlflowServer
    jenkins: Jenkins

    @model_validator(mode="after")
    def _distinct_ports(self) -> PlatformSettings:
        ports = [self.registry.port, self.mlflow.port, self.jenkins.port, self.jenkins.agent_port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"registry, mlflow and jenkins ports must differ (got {ports})")
        return self

    @property
    def registry_address(self) -> str:
        return registry_address(self.docker, self.registry)

    @property
    def local(self) -> bool:
        """True when the platform runs on this machine's Docker engine."""
        return self.docker.host is None or self.docker.host.startswith("unix://")

    @model_validator(mode="after")
    def _executors_only_local(self) -> PlatformSettings:
        if self.jenkins.executors and not self.local:
            raise ValueError(
                "jenkins.executors must be 0 on a remote platform host: agents run the builds"
            )
        return self
