"""MLflow tracking server and model registry: basic-auth, proxied artifacts, allowed hosts."""

from __future__ import annotations

import configparser
import io
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import pulumi
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.platform_services import DockerTarget, MlflowServer, Postgres
from modelyard.infra.components.container_health import port_open
from modelyard.infra.components.container_secrets import secret_files, upload
from modelyard.infra.components.image_build import IMAGES, local_image
from modelyard.infra.providers.docker_engine import Container, Volume
from modelyard.infra.providers.generated_secrets import Password

T = TypeVar("T")  # str, or a pulumi Output[str]
IMAGE_CONTEXT = IMAGES / "mlflow"
CONTAINER_PORT = 5000
DATA_DIR = "/var/lib/mlflow"
ARTIFACTS_DIR = f"{DATA_DIR}/artifacts"
AUTH_INI_PATH = "/etc/mlflow/basic_auth.ini"  # MLFLOW_AUTH_CONFIG_PATH in the image
RUN_AS = "10001"  # the image's mlflow user
# The password MLflow's auth app used to ship with; never acceptable for the admin.
DEFAULT_ADMIN_PASSWORD = "password1234"


def refuse_default_password(password: str) -> str:
    if not password or password == DEFAULT_ADMIN_PASSWORD:
        raise ConfigError(
            "the MLflow admin password is empty or MLflow's old default: "
            "use the generated one (never set it by hand to password1234)"
        )
    return password


def postgres_uri(db: Postgres, database: str, password: str) -> str:
    return (
        f"postgresql://{quote(db.user, safe='')}:{quote(password, safe='')}@{db.host}:{db.port}"
        f"/{database}?sslmode={db.sslmode}"
    )


def backend_store_uri(settings: MlflowServer, postgres_password: str | None) -> str:
    """Runs, experiments and the model registry: SQLite on the data volume, or PostgreSQL."""
    if settings.backend == "sqlite":
        return f"sqlite:///{DATA_DIR}/mlflow.db"
    assert settings.postgresql is not None and postgres_password is not None
    return postgres_uri(settings.postgresql, settings.postgresql.database, postgres_password)


def auth_database_uri(settings: MlflowServer, postgres_password: str | None) -> str:
    """Users and permissions live beside the tracking data, in their own database."""
    if settings.backend == "sqlite":
        return f"sqlite:///{DATA_DIR}/basic_auth.db"
    assert settings.postgresql is not None and postgres_password is not None
    return postgres_uri(settings.postgresql, settings.postgresql.auth_database, postgres_password)


def render_auth_ini(settings: MlflowServer, database_uri: str, admin_password: str) -> str:
    """The basic-auth app's configuration, admin password included (a 0400 file)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser["mlflow"] = {
        "default_permission": settings.default_permission,
        "database_uri": database_uri,
        "admin_username": settings.admin_username,
        "admin_password": refuse_default_password(admin_password),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
        # Each check is a PBKDF2 hash; cache good credentials briefly (a password change
        # reaches other workers within this many seconds).
        "auth_cache_ttl_seconds": "30",
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def container_name(environment: str) -> str:
    """Also its host name on the platform's network."""
    return f"modelyard-{environment}-mlflow"


def allowed_hosts(
    settings: MlflowServer, address: str, port: int, internal_host: str | None = None
) -> list[str]:
    """Host headers the server answers: bare (behind a proxy on 80/443) and with the port; and
    its name on the platform's network, as containers there address it."""
    hosts = dict.fromkeys([*settings.allowed_hosts, address])
    entries = [entry for host in hosts for entry in (host, f"{host}:{port}")]
    if internal_host is not None:
        entries.append(f"{internal_host}:{CONTAINER_PORT}")
    return entries


def server_arguments(settings: MlflowServer, hosts: list[str]) -> list[str]:
    """Arguments of `mlflow server` (the image's entrypoint); no secret appears here."""
    return [
        "--app-name", "basic-auth",
        "--host", "0.0.0.0",
        "--port", str(CONTAINER_PORT),
        "--workers", str(settings.workers),
        "--serve-artifacts",
        "--artifacts-destination", ARTIFACTS_DIR,
        "--allowed-hosts", ",".join(hosts),
    ]  # fmt: skip


def server_secrets(backend_uri: T, secret_key: T) -> dict[str, T]:
    """Variables the server reads that may hold secrets: files in /run/secrets that the image's
    `with-secrets` exports (container_secrets.py), never arguments or container environment."""
    return {
        # A PostgreSQL URI carries its password.
        "MLFLOW_BACKEND_STORE_URI": backend_uri,
        # Signs the auth app's CSRF tokens; stable across restarts and workers.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
    }


@dataclass(frozen=True)
class MlflowServerArgs:
    environment: str
    settings: MlflowServer
    target: DockerTarget
    network: pulumi.Input[str] | None = None  # the platform's Docker network
    # A Pulumi secret, for the postgresql backend.
    postgres_password: pulumi.Input[str] | None = None


def _validate(args: MlflowServerArgs) -> None:
    if args.settings.backend == "postgresql" and args.postgres_password is None:
        raise ConfigError(
            f"environment {args.environment}: the MLflow backend is postgresql but no password "
            "reached the component: set modelyard:platform.mlflow.postgresql.password (secret)"
        )
    if isinstance(args.postgres_password, str):
        raise ConfigError("the PostgreSQL password must be a Pulumi secret, not a plain string")


class TrackingServer(pulumi.ComponentResource):
    """`mlflow server --app-name basic-auth` in a container, with its image and data volume."""

    url: pulumi.Output[str]
    internal_url: pulumi.Output[str]
    admin_username: pulumi.Output[str]
    admin_password: pulumi.Output[str]

    def __init__(
        self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__("modelyard:platform:MlflowServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, target, engine = args.settings, args.target, args.target.host

        admin = Password(f"{name}-admin-password", length=32, opts=child)
        admin_password: pulumi.Output[str] = pulumi.Output.secret(admin.result)
        secret_key = Password(f"{name}-secret-key", length=48, opts=child)
        db_password = (
            pulumi.Output.secret(args.postgres_password)
            if args.postgres_password is not None
            else pulumi.Output.from_input(None)
        )
        auth_ini = pulumi.Output.all(db_password, admin_password).apply(
            lambda v: render_auth_ini(settings, auth_database_uri(settings, v[0]), v[1])
        )
        backend_uri = db_password.apply(lambda pw: backend_store_uri(settings, pw))

        image = local_image(f"{name}-image", "modelyard/mlflow", "mlflow", child, host=engine)
        host = container_name(args.environment)
        volume = Volume(
            f"{name}-data", name=f"modelyard-{args.environment}-mlflow-data", host=engine,
            opts=child,
        )  # fmt: skip
        self.container = Container(
            f"{name}-container",
            {
                "name": host,
                "host": engine,
                "image": image.image_name,
                "restart": "unless-stopped",
                "memory_mb": 2048,  # a runaway process is stopped, not the host
                "healthcheck": port_open(CONTAINER_PORT, start_period="60s"),
                "wait_healthy": True,  # `up` returns once it answers
                "user": RUN_AS,
                "command": server_arguments(
                    settings, allowed_hosts(settings, target.address, settings.port, host)
                ),
                "networks": [args.network] if args.network else [],
                "ports": [
                    {
                        "internal": CONTAINER_PORT,
                        "external": settings.port,
                        "ip": target.bind_address,
                    },
                ],
                "volumes": [{"volume": volume.name, "path": DATA_DIR}],
                "uploads": [
                    upload(AUTH_INI_PATH, pulumi.Output.secret(auth_ini), "0400", RUN_AS),
                    *secret_files(server_secrets(backend_uri, secret_key.result), owner=RUN_AS),
                ],
                "labels": {
                    "io.modelyard.environment": args.environment,
                    "io.modelyard.role": "mlflow",
                },
            },
            opts=child,
        )

        self.url = pulumi.Output.from_input(f"http://{target.address}:{settings.port}")
        self.internal_url = pulumi.Output.from_input(f"http://{host}:{CONTAINER_PORT}")
        self.admin_username = pulumi.Output.from_input(settings.admin_username)
        self.admin_password = admin_password
        self.register_outputs(
            {
                "url": self.url,
                "adminUsername": self.admin_username,
                "adminPassword": self.admin_password,
            }
        )
