"""Registering a model version with its lineage, in one call, so no version exists untagged."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def register_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    model_id: str,
    run_id: str,
    tags: dict[str, str],
) -> int:
    """Create a version of registered model `name` carrying `tags`; reuse the one this run
    already registered (a resumed training must not register twice)."""
    existing = find_version_of_run(client, name, run_id)
    if existing is not None:
        return existing
    try:
        client.create_registered_model(name, description="Registered by modelyard's pipeline.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, model_id=model_id
    )
    return int(version.version)


def find_version_of_run(client: MlflowClient, name: str, run_id: str) -> int | None:
    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    return min((int(v.version) for v in versions), default=None)
