"""ModelServing: one model's server on Kubernetes, rolled out with the environment's strategy.
Each model an environment serves has its own (its objects named and labelled after it, its
selectors including the model, so models sharing a namespace never select each other's pods).

Strategies (from `modelyard:promotion.rollout.strategy`):
- recreate: one Deployment, old pods stop before new ones start;
- rolling: one Deployment, `maxUnavailable: 0` so capacity never drops;
- blue-green: one Deployment per version (the desired one, plus the stable one kept as a warm
  standby); the Service selects the desired version's pods, so switching is one selector change
  and Pulumi creates the new Deployment before it switches and deletes the old one;
- canary, ab, shadow: one Deployment whose pods load the stable and the candidate version and
  split per request in-process (the canary's weight, A/B's sticky split, shadow's mirror), so the
  weight is a real share of requests, set by `pulumi up`. The canary's weight is a ConfigMap
  mounted into the pods, which re-read it: a step (10% -> 50% -> 100%) changes the share of the
  pods already running and restarts none. Without a stable version the pods serve the desired
  version alone (a finished canary: the deploy clears stableVersion once 100% held).
Before any model is promoted the server image runs without a model and reports not-ready; the
Deployments skip Pulumi's readiness wait then, so provisioning never fails for lack of a model.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from modelyard.contracts import variables
from modelyard.contracts.labels import (
    CANDIDATE_LABEL,
    MODEL_LABEL,
    SERVING_APP_LABELS,
    TRACK_LABEL,
    VERSION_LABEL,
)
from modelyard.contracts.serving_options import AUTH_MOUNT, AUTH_SECRET_SUFFIX, SERVING_PORT
from modelyard.contracts.strategies import TWO_VERSIONS_PER_POD, Strategy

PRE_STOP_SECONDS = 5
# How long a starting server may take to load its first model before liveness counts.
STARTUP_SECONDS = 300
# How long a pod stays bound to a node that stopped reporting (after its node-monitor grace
# period) before it is replaced elsewhere: Kubernetes' default is 300 s, five minutes with one
# replica fewer.
NODE_LOSS_TOLERATION_SECONDS = 30
NODE_LOSS_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# Where canary pods find their weight (a ConfigMap's key, re-read every second by the server).
WEIGHT_MOUNT = "/etc/modelyard/rollout"
WEIGHT_KEY = "candidateWeight"
SKIP_AWAIT = "pulumi.com/skipAwait"  # pulumi-kubernetes: don't wait for readiness
SERVING_UID = 10001
# MLflow reads ~/.mlflow/credentials: HOME points into the writable scratch volume and the
# credentials Secret is mounted read-only over its .mlflow folder (files, not env vars).
SERVING_HOME = "/tmp/home"


def credentials_file(
    username: pulumi.Input[str], password: pulumi.Input[str]
) -> pulumi.Output[str]:
    """~/.mlflow/credentials, which MLflow reads: the server's credentials as a file, never as
    environment variables (a pod's spec and `docker inspect` show those)."""
    return pulumi.Output.secret(
        pulumi.Output.all(username, password).apply(
            lambda pair: (
                f"[mlflow]\nmlflow_tracking_username = {pair[0]}\n"
                f"mlflow_tracking_password = {pair[1]}\n"
            )
        )
    )


@dataclass(frozen=True)
class Release:
    """One model version and the image that serves it (version None: no model yet)."""

    version: int | None
    image: str

    @property
    def label(self) -> str:
        return f"v{self.version}" if self.version is not None else "none"

    @property
    def digest(self) -> str:
        """`sha256:...` of a pinned image; the server reports it on /version and /metrics."""
        return self.image.partition("@")[2]


@dataclass(frozen=True)
class PullSecret:
    """Registry credentials the pods pull their image with (an image pull secret)."""

    registry: str
    username: str
    password: pulumi.Input[str]

    def docker_config(self) -> pulumi.Output[str]:
        """`.dockerconfigjson`, as `kubectl create secret docker-registry` writes it."""

        def render(password: str) -> str:
            token = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            entry = {"username": self.username, "password": password, "auth": token}
            return json.dumps({"auths": {self.registry: entry}})

        return pulumi.Output.secret(pulumi.Output.from_input(self.password).apply(render))


@dataclass(frozen=True)
class ModelServingArgs:
    namespace: pulumi.Input[str]
    service_account: pulumi.Input[str]
    strategy: Strategy
    model_name: str
    desired: Release
    tracking_uri: str
    requests: Mapping[str, str]
    limits: Mapping[str, str]
    replicas: int = 1
    max_replicas: int = 1
    target_cpu_percent: int = 70
    max_unavailable: int = 1
    # What served before: blue/green's standby; the version canary, A/B and shadow pods answer
    # with beside the desired one.
    stable: Release | None = None
    canary_weight: int = 100
    env: Mapping[str, str] = field(default_factory=dict)
    # (username, password) for an MLflow server with authentication; the password a secret.
    mlflow_credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    pull_secret: PullSecret | None = None
    # The bearer tokens' folder (file name -> secret content, contracts/serving_options.py
    # auth_files): a Secret mounted read-only; the server re-reads it, so a rotation (the Secret
    # updated in place by `pulumi up`, its files swapped by the kubelet) restarts no pod.
    auth_files: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def validate(self) -> None:
        if not 1 <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas {self.replicas} must be within 1..{self.max_replicas}")
        if not 1 <= self.canary_weight <= 100:
            raise ValueError(f"canary weight {self.canary_weight} must be a percentage 1..100")
        if "@sha256:" not in self.desired.image:
            raise ValueError(f"image {self.desired.image!r} must be pinned by digest")


@dataclass(frozen=True)
class _Track:
    role: str  # the Deployment's name suffix and track label
    release: Release
    replicas: int
    # Loaded beside `release` in the same pods, answering `weight`% of requests (canary, A/B).
    candidate: Release | None = None
    weight: int = 0

    @property
    def image(self) -> str:
        """The server code of the newer release runs both versions."""
        return (self.candidate or self.release).image


class ModelServing(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    deployments: list[str]

    def __init__(
        self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("modelyard:serving:ModelServing", name, None, opts)
        tracks, primary, selector = _plan(args)
        credentials = self._credentials(name, args) if args.mlflow_credentials else None
        pull = self._pull_secret(name, args, args.pull_secret) if args.pull_secret else None
        tokens = self._tokens(name, args) if args.auth_files else None
        weights = {
            track.role: self._weight(name, args, track)
            for track in tracks
            if track.candidate is not None and args.strategy == "canary"
        }
        deployments = {
            track.role: self._deployment(
                name, args, track, credentials, pull, tokens, weights.get(track.role), primary
            )
            for track in tracks
        }
        self.deployments = [f"{name}-{t.role}" for t in tracks]
        primary_deployment = deployments[primary.role]

        # The Service switches only after the Deployment it points at exists (and, with a model,
        # is ready): that ordering is what makes blue/green a switch rather than a replacement.
        # Readiness is awaited on the Deployments (skipped only before any model exists, when no
        # pod can be ready); the Service, created after them, has nothing of its own to wait for.
        service_meta: dict[str, Any] = {
            **self._meta(name, args),
            "annotations": {SKIP_AWAIT: "true"},
        }
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=service_meta,
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "target_port": "http", "protocol": "TCP"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(deployments.values())),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=self._meta(name, args),
            spec={
                "scale_target_ref": {
                    "api_version": "apps/v1",
                    "kind": "Deployment",
                    "name": primary_deployment.metadata.name,
                },
                "min_replicas": primary.replicas,
                "max_replicas": max(primary.replicas, args.max_replicas),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "average_utilization": args.target_cpu_percent,
                            },
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._meta(name, args),
            spec={
                "max_unavailable": args.max_unavailable,
                "selector": {"match_labels": _model_labels(args)},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.service_name = service.metadata.name
        self.register_outputs(
            {
                "service": self.service_name,
                "strategy": args.strategy,
                "desiredVersion": args.desired.version,
            }
        )

    @staticmethod
    def _meta(
        name: str, args: ModelServingArgs, suffix: str = ""
    ) -> k8s.meta.v1.ObjectMetaArgsDict:
        return {
            "name": f"{name}{suffix}",
            "namespace": args.namespace,
            "labels": _model_labels(args),
        }

    def _credentials(self, name: str, args: ModelServingArgs) -> k8s.core.v1.Secret:
        assert args.mlflow_credentials is not None
        return k8s.core.v1.Secret(
            f"{name}-mlflow-credentials",
            metadata=self._meta(name, args, "-mlflow-credentials"),
            type="Opaque",
            string_data={"credentials": credentials_file(*args.mlflow_credentials)},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _weight(self, name: str, args: ModelServingArgs, track: _Track) -> k8s.core.v1.ConfigMap:
        """The canary's weight, updated in place by each step (the provider mutates ConfigMaps)."""
        return k8s.core.v1.ConfigMap(
            f"{name}-{track.role}-weight",
            metadata=self._meta(name, args, f"-{track.role}-weight"),
            data={WEIGHT_KEY: str(track.weight)},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _tokens(self, name: str, args: ModelServingArgs) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{name}{AUTH_SECRET_SUFFIX}",
            metadata=self._meta(name, args, AUTH_SECRET_SUFFIX),
            type="Opaque",
            string_data={file: pulumi.Output.secret(v) for file, v in args.auth_files.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _pull_secret(
        self, name: str, args: ModelServingArgs, pull: PullSecret
    ) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{name}-pull",
            metadata=self._meta(name, args, "-pull"),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": pull.docker_config()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _deployment(
        self,
        name: str,
        args: ModelServingArgs,
        track: _Track,
        credentials: k8s.core.v1.Secret | None,
        pull: k8s.core.v1.Secret | None,
        tokens: k8s.core.v1.Secret | None,
        weight: k8s.core.v1.ConfigMap | None,
        primary: _Track,
    ) -> k8s.apps.v1.Deployment:
        release, candidate = track.release, track.candidate
        pod_labels = {**_model_labels(args), TRACK_LABEL: track.role, VERSION_LABEL: release.label}
        annotations = {VERSION_LABEL: release.label}
        if candidate is not None:
            pod_labels[CANDIDATE_LABEL] = candidate.label
        if release.version is None:
            # No model yet: pods are deliberately not-ready; don't fail the update waiting.
            annotations[SKIP_AWAIT] = "true"
        if args.strategy == "recreate":
            strategy: k8s.apps.v1.DeploymentStrategyArgsDict = {"type": "Recreate"}
        else:
            strategy = {
                "type": "RollingUpdate",
                "rolling_update": {"max_unavailable": 0, "max_surge": 1},
            }

        def uri(of: Release) -> str:
            return f"models:/{args.model_name}/{of.version}" if of.version is not None else ""

        env = {
            variables.MODEL_URI: uri(release),
            "MLFLOW_TRACKING_URI": args.tracking_uri,
            variables.IMAGE_DIGEST: Release(None, track.image).digest,
            **args.env,
        }
        if candidate is not None:
            env[variables.CANDIDATE_URI] = uri(candidate)
        if weight is not None:  # the canary: the weight from the mounted ConfigMap
            env[variables.CANDIDATE_WEIGHT_FILE] = f"{WEIGHT_MOUNT}/{WEIGHT_KEY}"
        security: dict[str, Any] = {
            "run_as_non_root": True,
            "run_as_user": SERVING_UID,
            "run_as_group": SERVING_UID,
            "seccomp_profile": {"type": "RuntimeDefault"},
        }
        container: dict[str, Any] = {
            "name": "server",
            "image": track.image,
            "image_pull_policy": "Always",
            "ports": [{"name": "http", "container_port": SERVING_PORT, "protocol": "TCP"}],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            # /health (readiness) says "a model is loaded and can answer". /ping and /health
            # answer 503 until a model is promoted, so liveness asks /version, which answers
            # whenever the process does: no restart loop before the first model exists.
            # The workers listen only once their first model is loaded (or refused), so the
            # startup probe gives a slow download minutes before liveness counts.
            "startup_probe": {
                "http_get": {"path": "/version", "port": "http"},
                "period_seconds": 2,
                "failure_threshold": STARTUP_SECONDS // 2,
            },
            "readiness_probe": {
                "http_get": {"path": "/health", "port": "http"},
                "period_seconds": 5,
                "failure_threshold": 3,
            },
            "liveness_probe": {
                "http_get": {"path": "/version", "port": "http"},
                "period_seconds": 10,
                "failure_threshold": 3,
            },
            # A pod being replaced keeps answering until the Service has stopped sending it new
            # connections (endpoints and kube-proxy lag its deletion); then SIGTERM drains it.
            "lifecycle": {"pre_stop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
            "resources": {"requests": dict(args.requests), "limits": dict(args.limits)},
            "security_context": {
                **security,
                "allow_privilege_escalation": False,
                "privileged": False,
                "read_only_root_filesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            # The root filesystem is read-only: models download into this scratch volume.
            "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
        }
        volumes: list[dict[str, Any]] = [{"name": "tmp", "empty_dir": {"size_limit": "1Gi"}}]
        if credentials is not None:
            container["env"].append({"name": "HOME", "value": SERVING_HOME})
            container["volume_mounts"].append(
                {"name": "mlflow", "mount_path": f"{SERVING_HOME}/.mlflow", "read_only": True}
            )
            volumes.append(
                {
                    "name": "mlflow",
                    "secret": {"secret_name": credentials.metadata.name, "default_mode": 0o440},
                }
            )
        if weight is not None:
            container["volume_mounts"].append(
                {"name": "weight", "mount_path": WEIGHT_MOUNT, "read_only": True}
            )
            volumes.append({"name": "weight", "config_map": {"name": weight.metadata.name}})
        if tokens is not None:
            # Owner root, group the server's (fsGroup): readable by the server alone.
            container["volume_mounts"].append(
                {"name": "auth", "mount_path": AUTH_MOUNT, "read_only": True}
            )
            volumes.append(
                {
                    "name": "auth",
                    "secret": {"secret_name": tokens.metadata.name, "default_mode": 0o440},
                }
            )
        metadata: dict[str, Any] = {
            **self._meta(name, args, f"-{track.role}"),
            "annotations": annotations,
        }
        # The pod is built up as plain dicts (the container gains env and mounts conditionally);
        # tests/infra validates the rendered manifests against the Kubernetes schema instead.
        template: Any = {
            "metadata": {"labels": pod_labels, "annotations": annotations},
            "spec": {
                "service_account_name": args.service_account,
                "automount_service_account_token": False,
                "security_context": {**security, "fs_group": SERVING_UID},
                "containers": [container],
                "volumes": volumes,
                # Replicas on different nodes where there are several, so a node drained or lost
                # takes one replica, not all; a preference, so one node still runs them all.
                "topology_spread_constraints": [
                    {
                        "max_skew": 1,
                        "topology_key": "kubernetes.io/hostname",
                        "when_unsatisfiable": "ScheduleAnyway",
                        "label_selector": {
                            "match_labels": {**_model_labels(args), TRACK_LABEL: track.role}
                        },
                    }
                ],
                "tolerations": node_loss_tolerations(),
            },
        }
        if pull is not None:
            template["spec"]["image_pull_secrets"] = [{"name": pull.metadata.name}]
        spec: k8s.apps.v1.DeploymentSpecArgsDict = {
            "replicas": track.replicas,
            "revision_history_limit": 5,
            "selector": {"match_labels": {**_model_labels(args), TRACK_LABEL: track.role}},
            "strategy": strategy,
            "template": template,
        }
        # The autoscaler owns the replica count of the Deployment it drives once it exists:
        # `up` must not set it back every time (the HPA's minimum carries `replicas` instead).
        # Blue/green's standby keeps its count from the file.
        ignore = ["spec.replicas"] if track is primary else []
        return k8s.apps.v1.Deployment(
            f"{name}-{track.role}",
            metadata=metadata,
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=ignore),
        )


def _plan(args: ModelServingArgs) -> tuple[list[_Track], _Track, dict[str, str]]:
    """The Deployments a strategy needs, the one the autoscaler drives, and the Service selector."""
    desired, stable = args.desired, args.stable
    if stable is not None and stable.version == desired.version:
        stable = None
    if args.strategy == "blue-green":
        active = _Track(desired.label, desired, args.replicas)
        tracks = [active]
        if stable is not None:
            tracks.append(_Track(stable.label, stable, args.replicas))
        return tracks, active, {**_model_labels(args), TRACK_LABEL: active.role}
    if args.strategy in TWO_VERSIONS_PER_POD and stable is not None:
        weight = args.canary_weight if args.strategy == "canary" else 0
        both = _Track("server", stable, args.replicas, candidate=desired, weight=weight)
        return [both], both, {**_model_labels(args), TRACK_LABEL: both.role}
    only = _Track("server", desired, args.replicas)
    return [only], only, {**_model_labels(args), TRACK_LABEL: only.role}


def _model_labels(args: ModelServingArgs) -> dict[str, str]:
    """Every object of one model's serving carries these; its selectors include the model, so
    the models of one namespace never select each other's pods."""
    return {**SERVING_APP_LABELS, MODEL_LABEL: args.model_name}


def node_loss_tolerations() -> list[dict[str, Any]]:
    """A pod on a node that is NotReady or unreachable is evicted after
    NODE_LOSS_TOLERATION_SECONDS, so its replacement starts on a node that works."""
    return [
        {"key": key, "operator": "Exists", "effect": "NoExecute",
         "toleration_seconds": NODE_LOSS_TOLERATION_SECONDS}
        for key in NODE_LOSS_TAINTS
    ]  # fmt: skip
