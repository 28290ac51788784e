"""The typed model of one environment file (environments/Pulumi.ENV.yaml)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from modelyard.contracts.environment.base import MetricRule, Section
from modelyard.contracts.environment.hosts import HostsSettings
from modelyard.contracts.environment.mlflow import MlflowSettings
from modelyard.contracts.environment.monitoring import MonitoringSettings
from modelyard.contracts.environment.notify import NotifySettings
from modelyard.contracts.environment.pipeline import PipelineSettings
from modelyard.contracts.environment.platform_services import PlatformSettings
from modelyard.contracts.environment.promotion import PromotionSettings
from modelyard.contracts.environment.serving import (
    MODEL_OBJECT_NAME,
    ModelSettings,
    Release,
    ServingSettings,
)
from modelyard.contracts.environment.training import TrainingSettings
from modelyard.contracts.tasks import Task
from pydantic import Field, PrivateAttr

NAMESPACE = "modelyard"


class Environment(Section):
    """Everything under the `modelyard:` namespace of one Pulumi stack config file."""

    description: str = ""
    mlflow: MlflowSettings
    training: TrainingSettings
    notify: NotifySettings = NotifySettings()
    promotion: PromotionSettings = PromotionSettings()
    serving: ServingSettings
    # Models served beside training.model, by registered name: each promoted on its own.
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    monitoring: MonitoringSettings = MonitoringSettings()
    pipeline: PipelineSettings = PipelineSettings()
    # Jenkins, registry and MLflow server as Pulumi provisions them (None: not provisioned).
    platform: PlatformSettings | None = None
    # What `modelyard configure` passes to Ansible about the machines (ansible/README.md).
    hosts: HostsSettings = HostsSettings()

    _name: str = PrivateAttr(default="")
    _path: Path = PrivateAttr(default=Path())
    _provider_config: dict[str, object] = PrivateAttr(default_factory=dict)

    @property
    def served_model(self) -> str:
        """The registered model this environment serves (and promotes)."""
        return self.serving.model_name or self.training.model

    @property
    def served_models(self) -> list[str]:
        """Every model this environment serves: training.model's first, then `models`."""
        return [self.served_model, *self.models]

    def release(self, model: str) -> Release:
        """What promotions wrote for `model` here; ConfigError names the file when it is not
        served here."""
        if model == self.served_model:
            return self.serving
        if model in self.models:
            return self.models[model]
        from modelyard.contracts.environment.loader import ConfigError

        raise ConfigError(
            f"{self.path}: environment {self.name} serves {', '.join(self.served_models)}, not "
            f"{model!r}: add it under {NAMESPACE}:models (with its localPort) to serve it here"
        )

    def local_port(self, model: str) -> int:
        """Where the embedded default serves `model` on 127.0.0.1."""
        release = self.release(model)
        assert isinstance(release, (ServingSettings, ModelSettings))
        return release.local_port

    def alias_of(self, model: str) -> str:
        """The MLflow alias naming the version of `model` this environment serves."""
        self.release(model)
        return f"models:/{model}@{self.name}"

    def release_key(self, model: str) -> str:
        """Where `model`'s release keys live in the file: `modelyard:serving` for
        training.model's, `modelyard:models.NAME` for the others'."""
        self.release(model)
        return (
            f"{NAMESPACE}:serving" if model == self.served_model else f"{NAMESPACE}:models.{model}"
        )

    @property
    def alias_uri(self) -> str:
        """The MLflow alias naming the version this environment serves: models:/MODEL@ENV."""
        return self.alias_of(self.served_model)

    def promotion_for(self, model: str) -> PromotionSettings:
        """The rules a promotion of `model` here passes: `modelyard:promotion`, with what
        `modelyard:models.NAME.promotion` sets for that model in place."""
        self.release(model)
        own = self.models[model].promotion if model in self.models else None
        return self.promotion.overridden_by(own)

    def training_gate(self, task: Task) -> MetricRule:
        """The gate a `task` model trains to here, or one message naming the file and the key."""
        from modelyard.contracts.environment.loader import ConfigError

        try:
            return self.training.gate_for(task)
        except ValueError as exc:
            raise ConfigError(f"{self.path}: {NAMESPACE}:training.gate: {exc}") from None

    def cross_section_problems(self) -> list[tuple[str, str]]:
        """(key, what to do) for each rule that spans sections; every one would otherwise fail
        only later, in `pulumi up`, a component or a stage. The loader reports them all."""
        problems: list[tuple[str, str]] = []
        rollout, serving = self.promotion.rollout, self.serving
        if rollout.strategy == "canary" and serving.canary_weight not in rollout.canary_steps:
            problems.append((
                "serving.canaryWeight",
                f"{serving.canary_weight} is not one of promotion.rollout.canarySteps "
                f"{rollout.canary_steps}. Use one of those.",
            ))  # fmt: skip
        for name, entry in self.models.items():
            if rollout.strategy == "canary" and entry.canary_weight not in rollout.canary_steps:
                problems.append((
                    f"models.{name}.canaryWeight",
                    f"{entry.canary_weight} is not one of promotion.rollout.canarySteps "
                    f"{rollout.canary_steps}. Use one of those.",
                ))  # fmt: skip
        if serving.platform == "kubernetes":
            problems.extend(self._kubernetes_model_problems())
        if self.pipeline.train_in == "kubernetes":
            problems.extend(self._training_job_problems())
        elif self.training.kubernetes.workers > 1:
            problems.append((
                "training.kubernetes.workers",
                f"is {self.training.kubernetes.workers} but pipeline.trainIn is "
                f"`{self.pipeline.train_in}`: several workers train together only as a Kubernetes "
                "Job. Set pipeline.trainIn to `kubernetes`, or workers to 1",
            ))  # fmt: skip
        if self.served_model in self.models:
            problems.append((
                f"models.{self.served_model}",
                "is training.model, served from modelyard:serving already: remove it here",
            ))  # fmt: skip
        ports = [("serving.localPort", serving.local_port)] + [
            (f"models.{name}.localPort", entry.local_port) for name, entry in self.models.items()
        ]
        for i, (key, port) in enumerate(ports):
            taken = [other for other, theirs in ports[:i] if theirs == port]
            if taken:
                problems.append((key, f"{port} is {taken[0]}'s too: give each model its own port"))
        if self.platform is not None:
            problems.extend(self._platform_problems(self.platform))
        return problems

    def _kubernetes_model_problems(self) -> list[tuple[str, str]]:
        """A model served beside training.model on Kubernetes gets objects named after it and
        runs the images its promotions write, pinned like training.model's."""
        problems: list[tuple[str, str]] = []
        for name, entry in self.models.items():
            if not MODEL_OBJECT_NAME.match(name):
                problems.append((
                    f"models.{name}",
                    "on Kubernetes a served model's Deployment and Service are named after it: "
                    "use at most 32 lowercase letters, digits and '-' (register it so in MLflow)",
                ))  # fmt: skip
            for key, ref in (("image", entry.image), ("stableImage", entry.stable_image)):
                problem = self.serving.image_problem(ref)
                if problem:
                    problems.append((f"models.{name}.{key}", problem))
        return problems

    def _training_job_problems(self) -> list[tuple[str, str]]:
        """A training Job runs in serving's namespace, from an image pushed to the package
        registry: both must exist before a pod can start."""
        problems: list[tuple[str, str]] = []
        if self.serving.platform != "kubernetes":
            problems.append((
                "pipeline.trainIn",
                f"is `kubernetes` but serving.platform is `{self.serving.platform}`: the Job runs "
                "in serving.namespace of the cluster serving.kubeconfig names. Serve on "
                "Kubernetes, or set pipeline.trainIn to `container` or `process`",
            ))  # fmt: skip
        if self.pipeline.package.registry is None:
            problems.append((
                "pipeline.package.registry",
                "is unset but pipeline.trainIn is `kubernetes`: the training image is pushed "
                "there for the cluster to pull. Set the registry the cluster pulls from",
            ))  # fmt: skip
        return problems

    def _platform_problems(self, platform: PlatformSettings) -> list[tuple[str, str]]:
        """The rest of the file must reach this platform: what would fail only after `up`."""
        problems: list[tuple[str, str]] = []
        tracking_host = urlsplit(self.mlflow.tracking_uri).hostname
        if tracking_host not in {platform.docker.address, *platform.mlflow.allowed_hosts}:
            problems.append((
                "mlflow.trackingUri",
                f"names host {tracking_host!r}, which the MLflow server would refuse "
                f"(DNS-rebinding protection): add it to {NAMESPACE}:platform.mlflow.allowedHosts",
            ))  # fmt: skip
        registry, address = self.serving.registry, platform.registry_address
        if registry is not None and registry != address:
            problems.append((
                "serving.imageRepository",
                f"pushes to {registry!r} but this environment's registry is {address!r}: use "
                f"{address}/... or fix {NAMESPACE}:platform.registry",
            ))  # fmt: skip
        if platform.jenkins.agents and not self.hosts.agent_authorized_key:
            # Without it Ansible authorizes no key, and Jenkins cannot log in to its agents.
            problems.append((
                "hosts.agentAuthorizedKey",
                "platform.jenkins.agents are set but the agents would not accept Jenkins' key: "
                "set it to the public half of platform.jenkins.agentPrivateKey",
            ))  # fmt: skip
        jenkins = platform.jenkins
        if jenkins.enabled and jenkins.executors == 0 and not jenkins.agents:
            problems.append((
                "platform.jenkins.agents",
                "Jenkins has no executor and no agent, so no build would ever run: list the "
                "jenkins_agents hosts of ansible/inventories/ENV/hosts.yml here",
            ))  # fmt: skip
        if jenkins.enabled and self.promotion.git.enabled and jenkins.git_private_key is None:
            problems.append((
                "platform.jenkins.gitPrivateKey",
                "promotion.git is on but Jenkins has no key to push release commits with, so "
                "every promotion it runs would fail: `pulumi config set --secret --path "
                "modelyard:platform.jenkins.gitPrivateKey < DEPLOY_KEY` (a key with write access "
                "to promotion.git.remote)",
            ))  # fmt: skip
        return problems

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        """The file this environment was read from."""
        return self._path

    @property
    def provider_config(self) -> dict[str, object]:
        """Config of other namespaces (e.g. `kubernetes:context`), passed through to providers."""
        return self._provider_config
