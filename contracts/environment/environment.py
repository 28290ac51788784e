"""The typed model of one environment file (environments/Pulumi.ENV.yaml)."""

from __future__ import annotations

from pathlib import Path

from modelyard.contracts.environment.base import Section
from modelyard.contracts.environment.hosts import HostsSettings
from modelyard.contracts.environment.mlflow import MlflowSettings
from modelyard.contracts.environment.monitoring import MonitoringSettings
from modelyard.contracts.environment.notify import NotifySettings
from modelyard.contracts.environment.pipeline import PipelineSettings
from modelyard.contracts.environment.platform_services import PlatformSettings
from modelyard.contracts.environment.promotion import PromotionSettings
from modelyard.contracts.environment.serving import ServingSettings
from modelyard.contracts.environment.training import TrainingSettings
from pydantic import PrivateAttr

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
