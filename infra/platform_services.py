"""The platform every environment's pipeline uses: image registry, MLflow server and Jenkins."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from modelyard.contracts.environment import ConfigError, Environment
from modelyard.contracts.environment.environment import NAMESPACE
from modelyard.infra.components.jenkins import JenkinsArgs, JenkinsController
from modelyard.infra.components.mlflow_server import MlflowServerArgs, TrackingServer
from modelyard.infra.components.registry import ImageRegistry, RegistryArgs
from modelyard.infra.providers.docker_engine import Network
from modelyard.infra.stack_secrets import StackSecrets


@dataclass(frozen=True)
class JenkinsOutputs:
    url: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]  # secret
    webhook_url: pulumi.Output[str]  # secret: it carries the trigger token


@dataclass(frozen=True)
class PlatformOutputs:
    # The Docker network the platform's containers share; serving on the same engine joins it.
    network: pulumi.Output[str]
    registry_address: pulumi.Output[str]
    registry_url: pulumi.Output[str]
    registry_username: pulumi.Output[str]
    registry_password: pulumi.Output[str]  # secret
    registry_ca_certificate: pulumi.Output[str]
    mlflow_url: pulumi.Output[str]
    # MLflow as containers on the platform's network reach it (127.0.0.1 there is themselves).
    mlflow_internal_url: pulumi.Output[str]
    mlflow_username: pulumi.Output[str]
    mlflow_password: pulumi.Output[str]  # secret
    jenkins: JenkinsOutputs | None  # None: left out (modelyard:platform.jenkins.enabled)

    def export(self) -> None:
        """Stack outputs; secrets stay secret (`pulumi stack output --show-secrets`)."""
        outputs = {
            "registryAddress": self.registry_address,
            "registryUrl": self.registry_url,
            "registryUsername": self.registry_username,
            "registryPassword": self.registry_password,
            "registryCaCertificate": self.registry_ca_certificate,
            "mlflowUrl": self.mlflow_url,
            "mlflowUsername": self.mlflow_username,
            "mlflowPassword": self.mlflow_password,
        }
        if self.jenkins is not None:
            outputs.update(
                jenkinsUrl=self.jenkins.url,
                jenkinsUsername=self.jenkins.username,
                jenkinsPassword=self.jenkins.password,
                jenkinsWebhookUrl=self.jenkins.webhook_url,
            )
        for key, value in outputs.items():
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
    # Every container, volume and image build happens on the engine at platform.docker.host
    # (this machine's when unset).
    network = Network(f"{name}-network", name=f"modelyard-{name}", host=settings.docker.host)

    tls = settings.registry.tls
    registry = ImageRegistry(
        f"{name}-registry",
        RegistryArgs(
            environment=name,
            settings=settings.registry,
            target=settings.docker,
            network=network.name,
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
            network=network.name,
            postgres_password=(
                _secret(secrets, "mlflow", "postgresql", "password")
                if settings.mlflow.postgresql is not None
                else None
            ),
        ),
    )
    return PlatformOutputs(
        network=network.name,
        registry_address=registry.address,
        registry_url=registry.url,
        registry_username=registry.username,
        registry_password=registry.password,
        registry_ca_certificate=registry.ca_certificate,
        mlflow_url=mlflow.url,
        mlflow_internal_url=mlflow.internal_url,
        mlflow_username=mlflow.admin_username,
        mlflow_password=mlflow.admin_password,
        jenkins=(
            _jenkins(environment, registry, mlflow, secrets) if settings.jenkins.enabled else None
        ),
    )


def _jenkins(
    environment: Environment,
    registry: ImageRegistry,
    mlflow: TrackingServer,
    secrets: StackSecrets | None,
) -> JenkinsOutputs:
    settings = environment.platform
    assert settings is not None
    name = environment.name
    jenkins = JenkinsController(
        f"{name}-jenkins",
        JenkinsArgs(
            environment=name,
            settings=settings.jenkins,
            target=settings.docker,
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
            agent_user=environment.hosts.agent_user,
            agent_private_key=(
                _secret(secrets, "jenkins", "agentPrivateKey")
                if settings.jenkins.agent_private_key is not None
                else None
            ),
            pulumi_passphrase=(
                _secret(secrets, "jenkins", "pulumi", "passphrase")
                if settings.jenkins.pulumi is not None
                else None
            ),
            git_private_key=(
                _secret(secrets, "jenkins", "gitPrivateKey")
                if settings.jenkins.git_private_key is not None
                else None
            ),
            serving_tokens={
                target: _secret(secrets, "jenkins", "servingTokens", target)
                for target in settings.jenkins.serving_tokens
            },
        ),
    )
    return JenkinsOutputs(
        url=jenkins.url,
        username=jenkins.admin_username,
        password=jenkins.admin_password,
        webhook_url=jenkins.webhook_url,
    )


def _has_secrets(environment: Environment) -> bool:
    settings = environment.platform
    assert settings is not None
    return bool(
        settings.registry.tls.key is not None
        or settings.mlflow.postgresql is not None
        or settings.jenkins.kubeconfigs
        or settings.jenkins.agent_private_key is not None
        or settings.jenkins.pulumi is not None
        or settings.jenkins.git_private_key is not None
        or bool(settings.jenkins.serving_tokens)
    )


def _secret(secrets: StackSecrets | None, *path: str) -> pulumi.Output[str]:
    assert secrets is not None  # _has_secrets() said the section holds this secret
    return secrets.get(*path)
