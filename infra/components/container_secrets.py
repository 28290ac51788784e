"""Secrets reach the platform's containers as files, never as container environment variables,
which `docker inspect` prints to anyone who may talk to the engine.

Each secret is a 0400 file named after the variable it stands for, in /run/secrets: Jenkins's
configuration-as-code reads `${NAME}` from there by itself, and the images without such support
start through `with-secrets` (infra/images/mlflow), which exports each file as its variable just
before the server starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

SECRETS_DIR = "/run/secrets"


def secret_files(values: Mapping[str, pulumi.Input[str]], owner: str) -> list[dict[str, Any]]:
    """Uploads (infra/providers/docker_engine.Container) of each value as a 0400 file."""
    return [
        upload(f"{SECRETS_DIR}/{name}", pulumi.Output.secret(value), "0400", owner)
        for name, value in sorted(values.items())
    ]


def upload(
    path: str, content: pulumi.Input[str], permissions: str = "0444", owner: str = "0"
) -> dict[str, Any]:
    """A file written into a container before it starts."""
    return {"file": path, "content": content, "permissions": permissions, "owner": owner}
