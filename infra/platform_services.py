"""The platform every environment's pipeline uses: image registry, MLflow server and Jenkins."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from modelyard.contracts.environment import ConfigError, Environment
from modelyard.contracts.environment.environment import NAMESPACE
from modelyard.infra.components.jenkins import JenkinsArgs, JenkinsController
from modelyard.infra.components.mlflow_server import MlflowServerArgs, TrackingServer
from modelyard.infra.components.registry import ImageRegistry, RegistryArgs
from modelyard.infra.stack_secrets import StackSecrets


@dataclass(frozen=True)
class PlatformOutputs:
    registry_address: pulumi.Output[str]
    registry_url: pulumi.Output[str]
    registry_username: pulumi.Output[str]
    registry_password: pulumi.Output[str]  # secret
    registry_ca_certificate: pulumi.Output[str]
    mlflow_url: pulumi.Output[str]
    mlflow_username: pulumi.Output[str]
    mlflow_password: pulumi.Output[str]  # secret
    jenkins_url: pulumi.Output[str]
    jenkins_username: pulumi.Output[str]
    jenkins_password: pulumi.Output[str]  # secret
    jenkins_webhook_url: pulumi.Output[str]  # secret: it carries the trigger token

    def export(self) -> None:
        """Stack outputs; secrets stay secret (`pulumi stack output --show-secrets`)."""
        for key, value in {
            "registryAddress": self.registry_address,
            "registryUrl": self.registry_url,
            "registryUsername": self.registry_username,
            "registryPassword": self.registry_password,
            "registryCaCertificate": self.registry_ca_certificate,
            "mlflowUrl": self.mlflow_url,
            "mlflowUsername": self.mlflow_username,
            "mlflowPassword": self.mlflow_password,
            "jenkinsUrl": self.jenkins_url,
            "jenkinsUsername": self.jenkins_username,
            "jenkinsPassword": self.jenkins_password,
            "jenkinsWebhookUrl": self.jenkins_webhook_url,
        }.items():
            pulumi.export(key, value)


def build_platform(environment: Environment) -> PlatformOutputs:
    """Create the environment's platform where its file says (local or remote Docker engine)."""
    settings = environment.platform
    if settings is None:
        raise ConfigError(
            f"{environment.path}: no `{NAMESPACE}:platform` section, so there is no platform to "
            "provision. Add one (see environments/Pulumi.local.yaml)."
        )
    name = environment.name
    secrets = StackSecrets("platform") if _has_secrets(environment) else None
    provider = None
    if not settings.local:
        # A remote engine: every container, volume and image build happens on that host.
        provider = docker.Provider(f"{name}-docker", host=settings.docker.host)

    tls = settings.registry.tls
    registry = ImageRegistry(
        f"{name}-registry",
        RegistryArgs(
            environment=name,
            settings=settings.registry,
            target=settings.docker,
            provider=provider,
            certificate=tls.certificate if tls.source == "provided" else None,
            key=_secret(secrets, "registry", "tls", "key") if tls.key is not None else None,
        ),
    )
    mlflow = TrackingServer(
        f"{name}-mlflow",
        MlflowServerArgs(
            environment=name,
            settings=settings.mlflow,
            target=settings.docker,
            provider=provider,
            postgres_password=(
                _secret(secrets, "mlflow", "postgresql", "password")
                if settings.mlflow.postgresql is not None
                else None
            ),
        ),
    )
    jenkins = JenkinsController(
        f"{name}-jenkins",
        JenkinsArgs(
            environment=name,
            settings=settings.jenkins,
            target=settings.docker,
            provider=provider,
            registry_address=registry.address,
            registry_username=registry.username,
            registry_password=registry.password,
            # What the pipeline is told to use: the environment's URI (a proxy may front it).
            mlflow_url=environment.mlflow.tracking_uri,
            mlflow_username=mlflow.admin_username,
            mlflow_password=mlflow.admin_password,
            kubeconfigs={
                target: _secret(secrets, "jenkins", "kubeconfigs", target)
                for target in settings.jenkins.kubeconfigs
            },
        ),
    )
    return PlatformOutputs(
        registry_address=registry.address,
        registry_url=registry.url,
        registry_username=registry.username,
        registry_password=registry.password,
        registry_ca_certificate=registry.ca_certificate,
        mlflow_url=mlflow.url,
        mlflow_username=mlflow.admin_username,
        mlflow_password=mlflow.admin_password,
        jenkins_url=jenkins.url,
        jenkins_username=jenkins.admin_username,
        jenkins_password=jenkins.admin_password,
        jenkins_webhook_url=jenkins.webhook_url,
    )


def _has_secrets(environment: Environment) -> bool:
    settings = environment.platform
    assert settings is not None
    return bool(
        settings.registry.tls.key is not None
        or settings.mlflow.postgresql is not None
        or settings.jenkins.kubeconfigs
    )


def _secret(secrets: StackSecrets | None, *path: str) -> pulumi.Output[str]:
    assert secrets is not None  # _has_secrets() said the section holds this secret
    return secrets.get(*path)
