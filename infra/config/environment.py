"""The typed model of one environment file (environments/Pulumi.ENV.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import PrivateAttr

from infra.config.base import Section
from infra.config.hosts import HostsSettings
from infra.config.mlflow import MlflowSettings
from infra.config.monitoring import MonitoringSettings
from infra.config.notify import NotifySettings
from infra.config.pipeline import PipelineSettings
from infra.config.platform import PlatformSettings
from infra.config.promotion import PromotionSettings
from infra.config.serving import ServingSettings
from infra.config.training import TrainingSettings

NAMESPACE = "modelyard"


class Environment(Section):
    """Everything under the `modelyard:` namespace of one Pulumi stack config file."""

    description: str = ""
    mlflow: MlflowSettings
    training: TrainingSettings
    notify: NotifySettings = NotifySettings()
    promotion: PromotionSettings = PromotionSettings()
    serving: ServingSettings
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
