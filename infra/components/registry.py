"""The container image registry: Docker Distribution with htpasswd (bcrypt) auth and TLS."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import yaml
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.platform_services import (
    DockerTarget,
    Registry,
    registry_address,
    registry_host,
)
from modelyard.infra.components.container_health import port_open
from modelyard.infra.components.container_secrets import upload
from modelyard.infra.components.image_build import IMAGES, local_image
from modelyard.infra.providers.docker_engine import Container, Volume
from modelyard.infra.providers.generated_secrets import Password, SelfSignedCertificate

IMAGE_CONTEXT = IMAGES / "registry"
CONTAINER_PORT = 5000
CONFIG_DIR = "/etc/docker/registry"
DATA_DIR = "/var/lib/docker-registry"
RUN_AS = "10002"  # the image's docker-registry user
CONFIG_PATH = f"{CONFIG_DIR}/config.yml"
HTPASSWD_PATH = f"{CONFIG_DIR}/htpasswd"
CERT_PATH = f"{CONFIG_DIR}/tls/cert.pem"
KEY_PATH = f"{CONFIG_DIR}/tls/key.pem"

T = TypeVar("T")


def render_config(settings: Registry, http_secret: str) -> str:
    """config.yml of the registry: every environment's registry runs with exactly this.
    `http_secret` signs upload state (stable, so a restart keeps uploads in flight); it is in
    this 0400 file, never in the container's environment, which `docker inspect` shows."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": DATA_DIR},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {
                "uploadpurging": {
                    "enabled": True,
                    "age": "168h",
                    "interval": "24h",
                    "dryrun": False,
                },
                "readonly": {"enabled": settings.read_only},
            },
        },
        "http": {
            "addr": f":{CONTAINER_PORT}",
            "secret": http_secret,
            "tls": {"certificate": CERT_PATH, "key": KEY_PATH},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "modelyard-registry", "path": HTPASSWD_PATH}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    return yaml.safe_dump(config, sort_keys=False)


def htpasswd_line(username: str, bcrypt_hash: str) -> str:
    if not bcrypt_hash.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("the registry accepts only bcrypt htpasswd entries")
    return f"{username}:{bcrypt_hash}\n"


@dataclass(frozen=True)
class ContainerFile:
    """A file written into the container before it starts (Pulumi uploads; `docker cp` in tests)."""

    content: Any  # str, or a pulumi Output[str] for secrets
    mode: str = "0444"
    owner: str = "0"


def container_files(
    settings: Registry, htpasswd: T, certificate: T, key: T, config: T
) -> dict[str, ContainerFile]:
    """Every file the registry container needs, keyed by path; secrets readable only by it.
    `config` is `render_config`'s text (an Output when its secret is one)."""
    return {
        CONFIG_PATH: ContainerFile(config, "0400", RUN_AS),
        HTPASSWD_PATH: ContainerFile(htpasswd, "0400", RUN_AS),
        CERT_PATH: ContainerFile(certificate),
        KEY_PATH: ContainerFile(key, "0400", RUN_AS),
    }


def garbage_collect_arguments() -> list[str]:
    """Arguments of the one-shot collector (the image's entrypoint is the registry binary)."""
    return ["garbage-collect", "--delete-untagged", CONFIG_PATH]


@dataclass(frozen=True)
class RegistryArgs:
    environment: str
    settings: Registry
    target: DockerTarget
    network: pulumi.Input[str] | None = None  # the platform's Docker network
    # A provided certificate (PEM) and its key (a Pulumi secret); None: generate them.
    certificate: pulumi.Input[str] | None = None
    key: pulumi.Input[str] | None = None


def _validate(args: RegistryArgs) -> None:
    tls_settings = args.settings.tls
    if tls_settings.source == "provided" and (args.certificate is None or args.key is None):
        raise ConfigError(
            f"environment {args.environment}: registry TLS is `provided` but no certificate/key "
            "reached the component: set modelyard:platform.registry.tls.certificate and .key"
        )
    if tls_settings.source == "generated" and (
        args.certificate is not None or args.key is not None
    ):
        raise ConfigError(
            f"environment {args.environment}: registry TLS is `generated`; "
            "a certificate was passed anyway"
        )
    if isinstance(args.key, str):
        raise ConfigError("the registry TLS key must be a Pulumi secret Output, not a plain string")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class ImageRegistry(pulumi.ComponentResource):
    """Docker Distribution in a container, with its image, data volume, password and certificate."""

    address: pulumi.Output[str]
    url: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__("modelyard:platform:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, target, host = args.settings, args.target, args.target.host

        password = Password(f"{name}-password", length=32, opts=child)
        http_secret = Password(f"{name}-http-secret", length=48, opts=child)
        certificate, key = self._certificate(name, args, child)
        digest: pulumi.Output[str] = pulumi.Output.secret(password.bcrypt_hash)
        htpasswd = digest.apply(lambda value: htpasswd_line(settings.username, value))
        signing: pulumi.Output[str] = pulumi.Output.secret(http_secret.result)
        config = signing.apply(lambda secret: render_config(settings, secret))

        image = local_image(f"{name}-image", "modelyard/registry", "registry", child, host=host)
        volume = Volume(
            f"{name}-data", name=f"modelyard-{args.environment}-registry-data", host=host,
            opts=child,
        )  # fmt: skip
        files = container_files(settings, htpasswd, certificate, key, config)
        uploads = [upload(path, f.content, f.mode, f.owner) for path, f in files.items()]
        self.container = Container(
            f"{name}-container",
            {
                "name": f"modelyard-{args.environment}-registry",
                "host": host,
                "image": image.image_name,
                "restart": "unless-stopped",
                "memory_mb": 512,  # a runaway process is stopped, not the host
                "healthcheck": port_open(CONTAINER_PORT, start_period="10s"),
                "wait_healthy": True,  # `up` returns once it answers
                "user": RUN_AS,
                "ports": [
                    {
                        "internal": CONTAINER_PORT,
                        "external": settings.port,
                        "ip": target.bind_address,
                    }
                ],
                "volumes": [{"volume": volume.name, "path": DATA_DIR}],
                "uploads": uploads,
                "labels": _labels(args.environment, "registry"),
                "networks": [args.network] if args.network else [],
            },
            opts=child,
        )
        if settings.garbage_collect:
            # Runs once per `pulumi up` against the same storage; the registry is read-only.
            Container(
                f"{name}-garbage-collect",
                {
                    "name": f"modelyard-{args.environment}-registry-gc",
                    "host": host,
                    "image": image.image_name,
                    "user": RUN_AS,
                    "command": garbage_collect_arguments(),
                    "volumes": [{"volume": volume.name, "path": DATA_DIR}],
                    "uploads": uploads,
                    "labels": _labels(args.environment, "registry-gc"),
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
            )

        self.address = pulumi.Output.from_input(registry_address(target, settings))
        self.url = self.address.apply(lambda a: f"https://{a}")
        self.username = pulumi.Output.from_input(settings.username)
        self.password = pulumi.Output.secret(password.result)
        self.ca_certificate = pulumi.Output.from_input(certificate)
        self.register_outputs(
            {
                "address": self.address,
                "url": self.url,
                "username": self.username,
                "password": self.password,
                "caCertificate": self.ca_certificate,
            }
        )

    def _certificate(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions
    ) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
        if args.certificate is not None and args.key is not None:
            return args.certificate, pulumi.Output.secret(args.key)
        host = registry_host(args.target, args.settings)
        # Valid for the registry's name, the platform host's, and loopback on that host.
        known = {"localhost", "127.0.0.1", host, args.target.address}
        cert = SelfSignedCertificate(
            f"{name}-tls",
            common_name=host,
            organization="modelyard",
            dns_names=sorted(n for n in known if not _is_ip(n)),
            ip_addresses=sorted(n for n in known if _is_ip(n)),
            validity_days=args.settings.tls.validity_days,
            opts=opts,
        )
        return cert.cert_pem, pulumi.Output.secret(cert.private_key_pem)


def _labels(environment: str, role: str) -> dict[str, str]:
    return {"io.modelyard.environment": environment, "io.modelyard.role": role}
