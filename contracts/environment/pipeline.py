"""How the pipeline runs for an environment (pipelines/Jenkinsfile and `modelyard pipeline run`)."""

from __future__ import annotations

import re
from typing import Literal

from modelyard.contracts.environment.base import SecretValue, Section
from pydantic import Field, field_validator, model_validator

_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class PackageSettings(Section):
    # The registry the package stage pushes the serving image to, as `docker login` names it
    # (host[:port]). Unset: the package is the model artifact alone (the embedded default).
    registry: str | None = None
    username: str = Field(default="modelyard", min_length=1)
    # A Pulumi secret; at run time its value comes from MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD
    # (Jenkins binds it from the registry credential with withCredentials).
    password: SecretValue | None = None
    # With a registry set but no Docker engine answering: fail (true), or package the artifact
    # alone and say so (false, for machines that may lack Docker).
    require_docker: bool = True

    @field_validator("registry")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None and not _REGISTRY.match(value):
            raise ValueError(
                "write the registry as `docker login` names it: host[:port], no scheme or path "
                "(e.g. 127.0.0.1:5443 or registry.example.internal)"
            )
        return value

    @model_validator(mode="after")
    def _registry_needs_password(self) -> PackageSettings:
        if self.registry is not None and self.password is None:
            raise ValueError(
                "registry is set: add password as a Pulumi secret "
                "(`pulumi config set --secret --path modelyard:pipeline.package.password ...`)"
            )
        return self


class PipelineSettings(Section):
    # The unit-test stage: test paths run with `-m "not slow and not docker"`.
    test_paths: list[str] = Field(default_factory=lambda: ["tests/config"])
    # Who the local runner records as approving production (Jenkins asks with an `input` step).
    approvers: list[str] = Field(default_factory=list)
    # The monitor: how often a killed training or serving process is started again.
    max_restarts: int = Field(default=2, ge=0, le=10)
    smoke_requests: int = Field(default=50, ge=1, le=10_000)
    # Where the train stage runs: a local process, a container of the model's training image
    # (infra/images/train, built from ml/models/NAME/model.yaml; needs Docker), or a Job of that
    # image in serving.namespace (training.kubernetes; pipelines/pipeline/training_job.py).
    train_in: Literal["process", "container", "kubernetes"] = "process"
    # The package stage: the model artifact, and the serving image pushed to a registry.
    package: PackageSettings = PackageSettings()
