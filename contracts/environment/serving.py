"""What an environment serves, where, and with which resources and safety limits."""

from __future__ import annotations

import re
from typing import Literal

from modelyard.contracts.environment.base import SecretValue, Section
from modelyard.contracts.environment.promotion import PER_MODEL_RULES, PromotionSettings
from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# Kubernetes quantities as people write them: "250m", "0.5", "512Mi", "1Gi".
_CPU = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
_MEMORY = r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# A model's Kubernetes objects are named ENV-serving-MODEL-ROLE: room left for the rest.
MODEL_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
_TOKEN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PINNED = re.compile(r"^[^@\s]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}$")


class Quantities(Section):
    cpu: str = Field(pattern=_CPU)
    memory: str = Field(pattern=_MEMORY)


class Resources(Section):
    requests: Quantities = Quantities(cpu="250m", memory="512Mi")
    limits: Quantities = Quantities(cpu="1", memory="1Gi")


class Autoscaling(Section):
    max_replicas: int = Field(default=4, ge=1, le=100)
    target_cpu_percent: int = Field(default=70, ge=10, le=100)


class Network(Section):
    # Namespaces (by name) whose pods may call the model, e.g. the ingress controller's.
    ingress_namespaces: list[str] = Field(default_factory=lambda: ["ingress-nginx"])
    # Where the server may connect to fetch models: the MLflow server and its artifact store.
    egress_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"])
    egress_ports: list[int] = Field(default_factory=lambda: [443])


class Credentials(Section):
    """A user name and its password (a Pulumi secret): what the pods log in with."""

    username: str = Field(min_length=1)
    password: SecretValue


class Auth(Section):
    """Bearer tokens the model server asks for (`modelyard:serving.auth`): scoring takes any of
    `tokens` (several at once, so one rotates without downtime: add the new one, move the
    callers, remove the old one), /metrics only `metricsToken` (Prometheus's). Unset: scoring
    and /metrics are open to anyone who reaches the port (the embedded default)."""

    tokens: dict[str, SecretValue] = Field(min_length=1)
    metrics_token: SecretValue

    @field_validator("tokens")
    @classmethod
    def _names(cls, value: dict[str, SecretValue]) -> dict[str, SecretValue]:
        for name in value:
            if not _TOKEN_NAME.match(name):
                raise ValueError(
                    f"token name {name!r} must be lower-case letters, digits and '-' (it names "
                    "a file in the server's token folder), e.g. tokens.ci or tokens.web-app"
                )
        return value


class Release(Section):
    """What `modelyard promote` / `rollback` write for one served model: what the next deploy
    (`pulumi up`, or the local server) rolls out."""

    desired_version: int | None = Field(default=None, ge=1)
    image: str | None = None
    # What served before the current rollout: blue/green's warm standby, and the version canary,
    # A/B and shadow pods answer with beside desiredVersion until the rollout ends.
    stable_version: int | None = Field(default=None, ge=1)
    stable_image: str | None = None
    # Share of requests the desired version answers while a canary is in progress (the deploy
    # steps it through promotion.rollout.canarySteps).
    canary_weight: int = Field(default=100, ge=1, le=100)

    @model_validator(mode="after")
    def _stable_pair(self) -> Release:
        if (self.stable_version is None) != (self.stable_image is None):
            raise ValueError("stableVersion and stableImage go together: set both or neither")
        return self


class ModelSettings(Release):
    """A model served beside `training.model` (`modelyard:models.NAME`, NAME its registered
    name): its own local port, and its own release, written by promotions of that model."""

    local_port: int = Field(ge=1024, le=65535)
    # This model's own promotion rules (gates, champion, maxDrift, soakMinutes, approvals,
    # freeze), each in place of the environment's `modelyard:promotion` one.
    promotion: PromotionSettings | None = None

    @field_validator("promotion")
    @classmethod
    def _only_per_model_rules(cls, value: PromotionSettings | None) -> PromotionSettings | None:
        if value is None:
            return None
        shared = [to_camel(name) for name in sorted(value.model_fields_set - set(PER_MODEL_RULES))]
        if shared:
            verb = "is" if len(shared) == 1 else "are"
            raise ValueError(
                f"{', '.join(shared)} {verb} the environment's, shared by every model it "
                "serves: set it under modelyard:promotion. A model may set "
                f"{', '.join(to_camel(name) for name in PER_MODEL_RULES)}"
            )
        return value


class ServingSettings(Release):
    # The embedded default serves each environment as local processes on 127.0.0.1.
    local_port: int = Field(ge=1024, le=65535)
    replicas: int = Field(default=1, ge=1, le=100)
    # Where the deploy stages serve it: `pulumi up` onto a Kubernetes cluster or a Docker engine,
    # or `process`, the embedded default (`make demo`): a local server process on localPort.
    platform: Literal["kubernetes", "docker", "process"] = "kubernetes"
    namespace: str = Field(default="modelyard-serving", pattern=_DNS_LABEL)
    # Registered model name in MLflow; defaults to the training model's name.
    model_name: str | None = None
    image_repository: str = Field(default="modelyard-serving", min_length=1)
    # The server image run before promotion has written `image`: it starts without a model and
    # reports not-ready, so the environment can be provisioned before any model exists.
    bootstrap_image: str | None = None
    kubeconfig: SecretValue | None = None
    # Registry credentials for the pods (an image pull secret); none: the registry is open to
    # the nodes, or the nodes carry their own credentials.
    pull_credentials: Credentials | None = None
    # MLflow credentials for the pods (a mounted credentials file) when MLflow is not in this
    # environment's own stack (`platform` provides them then).
    mlflow_credentials: Credentials | None = None
    resources: Resources = Resources()
    autoscaling: Autoscaling = Autoscaling()
    max_unavailable: int = Field(default=1, ge=1)
    network: Network = Network()
    auth: Auth | None = None
    # Compile each version to machine code in the background (lleaves), 3-4x faster scoring
    # once it is checked against LightGBM; false: LightGBM only (no compile CPU at start).
    compile_models: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ServingSettings:
        if self.autoscaling.max_replicas < self.replicas:
            raise ValueError(
                f"autoscaling.maxReplicas ({self.autoscaling.max_replicas}) is below replicas "
                f"({self.replicas}): raise maxReplicas"
            )
        if self.pull_credentials is not None and self.registry is None:
            raise ValueError(
                f"pullCredentials are set but imageRepository {self.image_repository!r} names no "
                "registry: write it as REGISTRY_HOST[:PORT]/NAME"
            )
        if self.platform == "kubernetes":
            if self.image is None and self.bootstrap_image is None:
                raise ValueError(
                    "a Kubernetes environment needs bootstrapImage (the server image run until "
                    "a model is promoted), pinned as REPO:TAG@sha256:DIGEST"
                )
            for key, ref in (
                ("image", self.image),
                ("stableImage", self.stable_image),
                ("bootstrapImage", self.bootstrap_image),
            ):
                problem = self.image_problem(ref)
                if problem:
                    raise ValueError(f"{key} {problem}")
        return self

    def image_problem(self, ref: str | None) -> str | None:
        """Why Kubernetes nodes may not run `ref` for this environment (None: they may)."""
        if ref is not None and not _PINNED.match(ref):
            return (
                f"{ref!r} must be pinned as REPO:TAG@sha256:DIGEST so every node runs the same "
                "bytes"
            )
        if ref is not None and not ref.startswith(self.image_repository + ":"):
            return f"{ref!r} is not from imageRepository {self.image_repository!r}"
        return None

    @property
    def registry(self) -> str | None:
        """The registry host of imageRepository (`host[:port]/...`), None for a bare name."""
        first, slash, _ = self.image_repository.partition("/")
        looks_like_host = "." in first or ":" in first or first == "localhost"
        return first if slash and looks_like_host else None

    @property
    def server_image(self) -> str:
        """The image serving the desired version on Kubernetes (the bootstrap image before any
        promotion; the model validator makes sure one of them is set)."""
        image = self.image or self.bootstrap_image
        assert image is not None, "a Kubernetes environment names image or bootstrapImage"
        return image
