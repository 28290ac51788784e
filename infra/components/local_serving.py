"""LocalModelServing: one model's server as a container on the local Docker engine (each model
an environment serves has its own, on its own port).

The local environment's counterpart of ModelServing: same image, port, user and options
(contracts/serving_options.py), hardened the same way (non-root, read-only root, no
capabilities), restarted by Docker when it dies, and health-checked on `/health` so `docker ps`
shows whether a model is loaded. Pulumi does not wait for "healthy": before any model is
promoted the server runs and reports not-ready, and provisioning still succeeds.

Before a promotion has written `serving.image`, it runs the server image built here from
infra/images/serving without a model (it then downloads the promoted version from MLflow).
MLflow's credentials reach it as ~/.mlflow/credentials in a volume of its own, never as
environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from modelyard.contracts import variables
from modelyard.contracts.labels import ENVIRONMENT_LABEL, MODEL_LABEL, VERSION_LABEL
from modelyard.contracts.serving_options import AUTH_MOUNT, SERVING_PORT
from modelyard.infra.components.container_secrets import upload
from modelyard.infra.components.image_build import local_image
from modelyard.infra.components.model_serving import (
    SERVING_HOME,
    SERVING_UID,
    Release,
    credentials_file,
)
from modelyard.infra.providers.docker_engine import Container, Volume
from modelyard.ml.serving.image import build_context

_HEALTH_PROBE = (
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{SERVING_PORT}/health', "
    "timeout=3).status == 200 else 1)"
)
BOOTSTRAP_REPOSITORY = "modelyard-serving"


@dataclass(frozen=True)
class LocalModelServingArgs:
    environment: str
    model_name: str
    # The container's name on the engine (its credentials volume is named after it).
    container: str
    # The promoted version and its image; image "" runs the server image built here.
    desired: Release
    tracking_uri: pulumi.Input[str]
    host_port: int
    memory_mb: int
    cpus: str
    network: pulumi.Input[str] | None = None  # the platform's, to reach its MLflow by name
    env: Mapping[str, str] = field(default_factory=dict)
    # (username, password) for an MLflow server with authentication; the password a secret.
    mlflow_credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    # The bearer tokens' folder (file name -> secret content): 0400 files of the server's user
    # in a volume of their own. A change replaces the container (the provider writes files
    # only before a container starts).
    auth_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def validate(self) -> None:
        if not 1024 <= self.host_port <= 65535:
            raise ValueError(f"host port {self.host_port} must be within 1024..65535")
        if self.memory_mb < 64:
            raise ValueError(f"memory {self.memory_mb} MB is too little for the model server")


class LocalModelServing(pulumi.ComponentResource):
    container_name: pulumi.Output[str]
    image: pulumi.Output[str]
    url: str

    def __init__(
        self, name: str, args: LocalModelServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("modelyard:serving:LocalModelServing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        version = args.desired.version
        model_uri = f"models:/{args.model_name}/{version}" if version is not None else ""
        image: pulumi.Input[str] = args.desired.image
        if not args.desired.image:
            image = local_image(
                f"{name}-image", BOOTSTRAP_REPOSITORY, "serving", child, write=build_context
            ).image_name
        env: dict[str, pulumi.Input[str]] = {
            **args.env,
            variables.MODEL_URI: model_uri,
            "MLFLOW_TRACKING_URI": args.tracking_uri,
            variables.IMAGE_DIGEST: args.desired.digest,
        }
        volumes: list[dict[str, pulumi.Input[str]]] = []
        uploads: list[dict[str, Any]] = []
        if args.mlflow_credentials is not None:
            env["HOME"] = SERVING_HOME
            credentials = Volume(
                f"{name}-mlflow-credentials",
                name=f"{args.container}-credentials",
                opts=child,
            )
            volumes.append({"volume": credentials.name, "path": f"{SERVING_HOME}/.mlflow"})
            # A volume takes the upload while the root filesystem stays read-only.
            uploads.append(
                upload(
                    f"{SERVING_HOME}/.mlflow/credentials",
                    credentials_file(*args.mlflow_credentials),
                    "0400",
                    str(SERVING_UID),
                )
            )
        if args.auth_files:
            tokens = Volume(f"{name}-auth", name=f"{args.container}-auth", opts=child)
            volumes.append({"volume": tokens.name, "path": AUTH_MOUNT})
            uploads += [
                upload(
                    f"{AUTH_MOUNT}/{file}", pulumi.Output.secret(value), "0400", str(SERVING_UID)
                )
                for file, value in sorted(args.auth_files.items())
            ]
        container = Container(
            f"{name}-server",
            {
                "name": args.container,
                "image": image,
                "envs": [pulumi.Output.concat(k, "=", v) for k, v in env.items()],
                "ports": [
                    {"internal": SERVING_PORT, "external": args.host_port, "ip": "127.0.0.1"}
                ],
                "user": f"{SERVING_UID}:{SERVING_UID}",
                "read_only": True,
                "tmpfs": {"/tmp": "rw,noexec,nosuid,size=1g"},
                "volumes": volumes,
                "uploads": uploads,
                "capabilities_drop": ["ALL"],
                "security_opts": ["no-new-privileges:true"],
                "memory_mb": args.memory_mb,
                "cpus": args.cpus,
                # The monitor the mission asks for: Docker starts the server again when it dies.
                "restart": "unless-stopped",
                # Not waited on: before the first promotion the server runs and is not ready.
                "healthcheck": {
                    "test": ["CMD", "python3", "-c", _HEALTH_PROBE],
                    "interval": "10s",
                    "timeout": "5s",
                    "retries": 3,
                    "start_period": "20s",
                },
                "networks": [args.network] if args.network is not None else [],
                "labels": {
                    ENVIRONMENT_LABEL: args.environment,
                    MODEL_LABEL: args.model_name,
                    VERSION_LABEL: args.desired.label,
                },
            },
            opts=child,
        )
        self.container_name = container.name
        self.image = pulumi.Output.from_input(image)
        self.url = f"http://127.0.0.1:{args.host_port}"
        self.register_outputs(
            {"container": self.container_name, "image": self.image, "url": self.url}
        )
