"""The Pulumi program: composes the components an environment file asks for.

`build(environment)` is the whole program; `infra/__main__.py` calls it under the real engine and
`infra.render` under the mock runtime, so what auditors see is what `pulumi up` would do.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from modelyard.contracts.environment import Environment, check_cross_section
from modelyard.contracts.environment.serving import Resources
from modelyard.contracts.labels import SERVING_APP_LABELS
from modelyard.contracts.quantities import cpu_millis, memory_bytes
from modelyard.contracts.serving_options import SERVING_PORT, auth_files, server_variables
from modelyard.infra.components.cluster import Cluster, ClusterArgs, Quota
from modelyard.infra.components.local_serving import LocalModelServing, LocalModelServingArgs
from modelyard.infra.components.model_serving import (
    ModelServing,
    ModelServingArgs,
    PullSecret,
    Release,
)
from modelyard.infra.components.model_training import ModelTraining, ModelTrainingArgs
from modelyard.infra.platform_services import PlatformOutputs, build_platform
from modelyard.infra.stack_secrets import StackSecrets

# Room for a rolling surge or a blue/green standby next to the autoscaler's maximum.
_QUOTA_HEADROOM = 2


# (username, password) of the environment's MLflow server, the password a secret Output.
Credentials = tuple[pulumi.Input[str], pulumi.Input[str]]


def build(environment: Environment) -> None:
    check_cross_section(environment)  # before any resource, as one message
    platform = None
    if environment.platform is not None:
        platform = build_platform(environment)
        platform.export()
    build_serving(environment, platform)


def build_serving(environment: Environment, platform: PlatformOutputs | None = None) -> None:
    """Where the model is served: Kubernetes (namespace + rollout) or the local Docker engine.

    With the environment's `platform`, the server downloads models from its MLflow with its
    credentials; a container on the same engine reaches it over the platform's network."""
    credentials = (platform.mlflow_username, platform.mlflow_password) if platform else None
    if environment.serving.platform == "process":
        return  # served by the local runner's processes, nothing for the engine
    if environment.serving.platform == "docker":
        _build_local_serving(environment, platform, credentials)
    else:
        _build_kubernetes_serving(environment, credentials)


def _releases(environment: Environment, model: str) -> tuple[Release, Release | None]:
    """What `model` serves here: its promoted version and image (the environment's bootstrap
    image before its first promotion), and the stable release a rollout keeps beside it."""
    release = environment.release(model)
    desired = Release(release.desired_version, release.image or environment.serving.server_image)
    stable = None
    if release.stable_version is not None and release.stable_image is not None:
        stable = Release(release.stable_version, release.stable_image)
    return desired, stable


def _auth_files(environment: Environment) -> dict[str, pulumi.Output[str]]:
    """The server's token files (name -> secret content); none when its serving is open."""
    files = auth_files(environment)
    if not files:
        return {}
    secrets = StackSecrets("serving")
    return {name: secrets.get(*path) for name, path in files.items()}


def _build_kubernetes_serving(
    environment: Environment, mlflow_credentials: Credentials | None
) -> None:
    serving = environment.serving
    secrets = (
        StackSecrets("serving") if serving.mlflow_credentials or serving.pull_credentials else None
    )
    if mlflow_credentials is None and serving.mlflow_credentials is not None:
        assert secrets is not None
        mlflow_credentials = (
            serving.mlflow_credentials.username,
            secrets.get("mlflowCredentials", "password"),
        )
    pull = None
    if serving.pull_credentials is not None and serving.registry is not None:
        assert secrets is not None
        pull = PullSecret(
            serving.registry,
            serving.pull_credentials.username,
            secrets.get("pullCredentials", "password"),
        )
    rollout = environment.promotion.rollout
    provider = _kubernetes_provider(environment)
    on_cluster = pulumi.ResourceOptions(provider=provider)
    requests = serving.resources.requests
    limits = serving.resources.limits
    models = environment.served_models
    pods = (serving.autoscaling.max_replicas * _QUOTA_HEADROOM + 1) * len(models)
    quota = Quota(
        requests_cpu=_scale_cpu(requests.cpu, pods),
        requests_memory=_scale_memory(requests.memory, pods),
        limits_cpu=_scale_cpu(limits.cpu, pods),
        limits_memory=_scale_memory(limits.memory, pods),
        pods=pods,
    )
    trains_here = environment.pipeline.train_in == "kubernetes"
    if trains_here:  # room for the training Job's pods beside the serving ones
        settings = environment.training.kubernetes
        quota = _with_training_pods(quota, settings.resources, settings.workers)
    cluster = Cluster(
        f"{environment.name}-cluster",
        ClusterArgs(
            namespace=serving.namespace,
            environment=environment.name,
            quota=quota,
            default_requests={"cpu": requests.cpu, "memory": requests.memory},
            default_limits={"cpu": limits.cpu, "memory": limits.memory},
            serving_selector=SERVING_APP_LABELS,
            serving_port=SERVING_PORT,
            ingress_namespaces=serving.network.ingress_namespaces,
            egress_cidrs=serving.network.egress_cidrs,
            egress_ports=serving.network.egress_ports,
        ),
        opts=on_cluster,
    )
    if trains_here:
        _build_training(environment, cluster, mlflow_credentials, pull, on_cluster)
    services, versions = {}, {}
    tokens = _auth_files(environment)
    for model in models:
        desired, stable = _releases(environment, model)
        # training.model keeps the name (and the Pulumi URNs) it had before models were listed.
        name = f"{environment.name}-serving" + ("" if model == models[0] else f"-{model}")
        served = ModelServing(
            name,
            ModelServingArgs(
                namespace=cluster.namespace,
                service_account=cluster.serving_service_account,
                strategy=rollout.strategy,
                model_name=model,
                desired=desired,
                stable=stable,
                canary_weight=environment.release(model).canary_weight,
                tracking_uri=environment.mlflow.tracking_uri,
                requests={"cpu": requests.cpu, "memory": requests.memory},
                limits={"cpu": limits.cpu, "memory": limits.memory},
                replicas=serving.replicas,
                max_replicas=serving.autoscaling.max_replicas,
                target_cpu_percent=serving.autoscaling.target_cpu_percent,
                max_unavailable=serving.max_unavailable,
                env=server_variables(environment),
                mlflow_credentials=mlflow_credentials,
                pull_secret=pull,
                auth_files=tokens,
            ),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=[cluster]),
        )
        services[model], versions[model] = served.service_name, desired.version
    pulumi.export("servingNamespace", cluster.namespace)
    # training.model's, as before; then every model's, by name.
    pulumi.export("servingService", services[models[0]])
    pulumi.export("servingVersion", versions[models[0]])
    pulumi.export("servingServices", services)
    pulumi.export("servingVersions", versions)


def _with_training_pods(quota: Quota, resources: Resources, pods: int) -> Quota:
    def cpu(total: str, more: str) -> str:
        return f"{cpu_millis(total) + pods * cpu_millis(more)}m"

    def memory(total: str, more: str) -> str:
        return f"{math.ceil((memory_bytes(total) + pods * memory_bytes(more)) / 2**20)}Mi"

    return Quota(
        requests_cpu=cpu(quota.requests_cpu, resources.requests.cpu),
        requests_memory=memory(quota.requests_memory, resources.requests.memory),
        limits_cpu=cpu(quota.limits_cpu, resources.limits.cpu),
        limits_memory=memory(quota.limits_memory, resources.limits.memory),
        pods=quota.pods + pods,
    )


def _build_training(
    environment: Environment,
    cluster: Cluster,
    mlflow_credentials: Credentials | None,
    serving_pull: PullSecret | None,
    on_cluster: pulumi.ResourceOptions,
) -> None:
    """The training Jobs' service account, volume, egress and Secrets (pipeline.trainIn
    `kubernetes`). They pull from the package registry, with serving's pull credentials."""
    registry = environment.pipeline.package.registry
    assert registry is not None  # Environment.cross_section_problems
    pull = (
        PullSecret(registry, serving_pull.username, serving_pull.password) if serving_pull else None
    )
    settings = environment.training.kubernetes
    ModelTraining(
        f"{environment.name}-training",
        ModelTrainingArgs(
            namespace=cluster.namespace,
            environment=environment.name,
            storage=settings.storage,
            storage_class=settings.storage_class,
            egress_cidrs=environment.serving.network.egress_cidrs,
            egress_ports=environment.serving.network.egress_ports,
            mlflow_credentials=mlflow_credentials,
            pull_secret=pull,
            workers=settings.workers,
        ),
        opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[cluster])),
    )


def _kubernetes_provider(environment: Environment) -> k8s.Provider:
    serving = environment.serving
    context = environment.provider_config.get("kubernetes:context")
    kubeconfig = (
        StackSecrets("serving").get("kubeconfig") if serving.kubeconfig else _ambient_kubeconfig()
    )
    return k8s.Provider(
        f"{environment.name}-kubernetes",
        kubeconfig=kubeconfig,
        context=str(context) if context else None,
        namespace=serving.namespace,
        enable_server_side_apply=True,
        # Update Secrets and ConfigMaps in place, as Kubernetes does (the provider's default
        # replaces them): the kubelet then swaps the mounted files of running pods (a rotated
        # token, a canary's next weight) and no Deployment changes.
        enable_config_map_mutable=True,
        enable_secret_mutable=True,
    )


def _ambient_kubeconfig() -> pulumi.Output[str] | None:
    """KUBECONFIG's file (Jenkins binds it from a file credential; the local cluster writes one),
    handed to the provider as a secret: left to the provider, its content (client keys included)
    would be a plain-text input in the stack's state."""
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = Path(configured) if configured else Path.home() / ".kube" / "config"
    if not path.is_file():
        return None
    return pulumi.Output.secret(path.read_text())


def _build_local_serving(
    environment: Environment, platform: PlatformOutputs | None, credentials: Credentials | None
) -> None:
    serving = environment.serving
    models = environment.served_models
    urls, versions = {}, {}
    tokens = _auth_files(environment)
    for model in models:
        release = environment.release(model)
        # Before a promotion names an image, the server image is built on the engine itself.
        desired = Release(release.desired_version, release.image or serving.bootstrap_image or "")
        # training.model keeps the names (and the Pulumi URNs) it had before models were listed.
        suffix = "" if model == models[0] else f"-{model}"
        local = LocalModelServing(
            f"{environment.name}-serving{suffix}",
            LocalModelServingArgs(
                environment=environment.name,
                model_name=model,
                container=f"modelyard-{environment.name}-serving{suffix}",
                desired=desired,
                tracking_uri=(
                    platform.mlflow_internal_url if platform else environment.mlflow.tracking_uri
                ),
                host_port=environment.local_port(model),
                memory_mb=memory_bytes(serving.resources.limits.memory) // 2**20,
                cpus=str(cpu_millis(serving.resources.limits.cpu) / 1000),
                network=platform.network if platform else None,
                env=server_variables(environment),
                mlflow_credentials=credentials,
                auth_files=tokens,
            ),
        )
        urls[model], versions[model] = local.url, desired.version
        if model == models[0]:  # training.model's, as before
            pulumi.export("servingImage", local.image)
            pulumi.export("servingUrl", local.url)
            pulumi.export("servingVersion", desired.version)
    pulumi.export("servingUrls", urls)
    pulumi.export("servingVersions", versions)


def _scale_cpu(quantity: str, factor: int) -> str:
    return f"{cpu_millis(quantity) * factor}m"


def _scale_memory(quantity: str, factor: int) -> str:
    return f"{math.ceil(memory_bytes(quantity) * factor / 2**20)}Mi"
