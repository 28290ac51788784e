"""Secrets reach the platform's containers as files, never as container environment variables,
which `docker inspect` prints to anyone who may talk to the engine.

Each secret is a 0400 file named after the variable it stands for, in /run/secrets: Jenkins's
configuration-as-code reads `${NAME}` from there by itself, and the images without such support
start through `with-secrets` (infra/images/mlflow), which exports each file as its variable just
before the server starts."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

SECRETS_DIR = "/run/secrets"


def secret_files(
    values: Mapping[str, pulumi.Input[str]], owner: str
) -> list[docker.ContainerUploadArgs]:
    return [
        docker.ContainerUploadArgs(
            file=f"{SECRETS_DIR}/{name}",
            content=pulumi.Output.secret(value),
            permissions="0400",
            owner=owner,
            group=owner,
        )
        for name, value in sorted(values.items())
    ]
