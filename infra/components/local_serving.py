"""LocalModelServing: the model server as a container on the local Docker engine.

The local environment's counterpart of ModelServing: same image, port, user and environment
variables, hardened the same way (non-root, read-only root, no capabilities), restarted by
Docker when it dies, and health-checked on `/health` so `docker ps` shows whether a model is
loaded. Pulumi does not wait for "healthy": before any model is promoted the server runs and
reports not-ready, and provisioning still succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
from modelyard.contracts import variables
from modelyard.infra.components.model_serving import SERVING_PORT, SERVING_UID, Release

_HEALTH_PROBE = (
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{SERVING_PORT}/health', "
    "timeout=3).status == 200 else 1)"
)


@dataclass(frozen=True)
class LocalModelServingArgs:
    environment: str
    model_name: str
    desired: Release
    tracking_uri: str
    host_port: int
    memory_mb: int
    cpus: str
    networks: Sequence[pulumi.Input[str]] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # (username, password) for an MLflow server with authentication; the password a secret.
    mlflow_credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None

    def validate(self) -> None:
        if not 1024 <= self.host_port <= 65535:
            raise ValueError(f"host port {self.host_port} must be within 1024..65535")
        if self.memory_mb < 64:
            raise ValueError(f"memory {self.memory_mb} MB is too little for the model server")


def _credential_envs(args: LocalModelServingArgs) -> list[pulumi.Input[str]]:
    if args.mlflow_credentials is None:
        return []
    username, password = args.mlflow_credentials
    return [
        pulumi.Output.concat("MLFLOW_TRACKING_USERNAME=", username),
        pulumi.Output.secret(pulumi.Output.concat("MLFLOW_TRACKING_PASSWORD=", password)),
    ]


class LocalModelServing(pulumi.ComponentResource):
    container_name: pulumi.Output[str]
    url: str

    def __init__(
        self, name: str, args: LocalModelServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("modelyard:serving:LocalModelServing", name, None, opts)
        version = args.desired.version
        model_uri = f"models:/{args.model_name}/{version}" if version is not None else ""
        env = {
            variables.MODEL_URI: model_uri,
            "MLFLOW_TRACKING_URI": args.tracking_uri,
            variables.IMAGE_DIGEST: args.desired.digest,
            **args.env,
        }
        container = docker.Container(
            f"{name}-server",
            name=f"modelyard-{args.environment}-serving",
            image=args.desired.image,
            envs=[f"{k}={v}" for k, v in env.items()] + _credential_envs(args),
            ports=[{"internal": SERVING_PORT, "external": args.host_port, "ip": "127.0.0.1"}],
            user=f"{SERVING_UID}:{SERVING_UID}",
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=1g"},
            capabilities={"drops": ["ALL"]},
            security_opts=["no-new-privileges:true"],
            memory=args.memory_mb,
            cpus=args.cpus,
            # The monitor the mission asks for: Docker starts the server again when it dies.
            restart="unless-stopped",
            healthcheck={
                "tests": ["CMD", "python3", "-c", _HEALTH_PROBE],
                "interval": "10s",
                "timeout": "5s",
                "retries": 3,
                "start_period": "20s",
            },
            wait=False,
            networks_advanced=[{"name": network} for network in args.networks],
            labels=[
                {"label": "modelyard.io/environment", "value": args.environment},
                {"label": "modelyard.io/model-version", "value": args.desired.label},
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.container_name = container.name
        self.url = f"http://127.0.0.1:{args.host_port}"
        self.register_outputs({"container": self.container_name, "url": self.url})
