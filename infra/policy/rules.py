"""The serving policy as plain functions: the Pulumi policy pack and `modelyard infra policy`
both call these, and each has a passing and a violating unit test.

A resource is its Pulumi type token, its name and its inputs in wire form (camelCase, the
Kubernetes manifest for Kubernetes objects). Resource rules return the problems with one
resource; stack rules look at all of them and return (resource name, problem) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from modelyard.contracts.labels import ENVIRONMENT_LABEL
from modelyard.infra.providers.resource_types import CONTAINER

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
DOCKER_CONTAINER = CONTAINER  # infra/providers/docker_engine.py
_POD_TEMPLATES = {
    DEPLOYMENT: ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key|private_?key|kubeconfig)", re.I)
MASKED = "[secret]"
SECRETS_RULE = "no-plain-secrets"
PRODUCTION_MIN_REPLICAS = 2


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: dict[str, Any]


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.policy}] {self.resource}: {self.message}"


def is_masked(value: Any) -> bool:
    """A secret as the render shows it, or as the policy runtime hands it over."""
    return value == MASKED or type(value).__name__ == "Secret"


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def pod_spec(type_: str, props: dict[str, Any]) -> dict[str, Any] | None:
    path = _POD_TEMPLATES.get(type_)
    spec = _get(props, *path) if path else None
    return spec if isinstance(spec, dict) else None


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        yield from (c for c in spec.get(key) or [] if isinstance(c, dict))


# --- resource rules --------------------------------------------------------------------------


def pinned_images(type_: str, props: dict[str, Any]) -> list[str]:
    """Kubernetes pulls by reference: only a digest guarantees every node runs the same bytes."""
    spec = pod_spec(type_, props)
    if spec is None:
        return []
    return [
        f"container {c.get('name')!r} image {c.get('image')!r} is not pinned by @sha256 digest"
        for c in _containers(spec)
        if not _PINNED.search(str(c.get("image") or ""))
    ]


def non_root(type_: str, props: dict[str, Any]) -> list[str]:
    if type_ == DOCKER_CONTAINER:
        user = str(props.get("user") or "").split(":")[0]
        return [] if user not in ("", "0", "root") else ["container runs as root: set `user`"]
    spec = pod_spec(type_, props)
    if spec is None:
        return []
    pod = spec.get("securityContext") or {}
    problems = []
    for c in _containers(spec):
        ctx = c.get("securityContext") or {}
        non_root_set = ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
        uid = ctx.get("runAsUser", pod.get("runAsUser"))
        if not non_root_set or uid == 0:
            problems.append(f"container {c.get('name')!r} may run as root: set runAsNonRoot")
        if ctx.get("allowPrivilegeEscalation") is not False or ctx.get("privileged"):
            problems.append(f"container {c.get('name')!r} may escalate privileges")
    return problems


def probes(type_: str, props: dict[str, Any]) -> list[str]:
    if type_ == DOCKER_CONTAINER:
        return [] if _get(props, "healthcheck", "test") else ["container has no healthcheck"]
    spec = pod_spec(type_, props)
    if spec is None or type_ in ("kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob"):
        return []
    return [
        f"container {c.get('name')!r} has no {probe}"
        for c in spec.get("containers") or []
        for probe in ("readinessProbe", "livenessProbe")
        if not c.get(probe)
    ]


def resource_limits(type_: str, props: dict[str, Any]) -> list[str]:
    if type_ == DOCKER_CONTAINER:
        return [] if props.get("memory_mb") else ["container has no memory limit"]
    spec = pod_spec(type_, props)
    if spec is None:
        return []
    return [
        f"container {c.get('name')!r} has no {kind}.{resource}"
        for c in _containers(spec)
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
        if not _get(c, "resources", kind, resource)
    ]


def no_plain_secrets(type_: str, props: dict[str, Any]) -> list[str]:
    """Values under secret-sounding keys (and Secret objects' data) must be Pulumi secrets."""
    problems: list[str] = []

    def flag(value: Any, path: str) -> None:
        # A switch (the provider's enableSecretMutable: the engine passes provider inputs as
        # strings) names secrets but cannot hold one.
        switch = isinstance(value, bool) or value in ("true", "false")
        if not switch and value not in (None, "") and not is_masked(value):
            problems.append(
                f"{path.lstrip('.')} holds a plain-text secret: make it a Pulumi secret"
            )

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            # Kubernetes env vars and docker labels are {name, value} pairs.
            named = value.get("name")
            if isinstance(named, str) and _SECRET_NAME.search(named) and "value" in value:
                flag(value["value"], f"{path}[{named}]")
            for key, item in value.items():
                # `secretName`, `tokenRef` and the like name a secret; they don't hold one.
                holds = not key.endswith(("Name", "Ref")) and not isinstance(item, dict | list)
                if _SECRET_NAME.search(key) and holds:
                    flag(item, f"{path}.{key}")
                else:
                    walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if (
                    isinstance(item, str)
                    and "=" in item
                    and _SECRET_NAME.search(item.split("=")[0])
                ):
                    flag(item.split("=", 1)[1], f"{path}[{item.split('=')[0]}]")
                else:
                    walk(item, f"{path}[{i}]")

    if type_ == "kubernetes:core/v1:Secret":
        for key in ("data", "stringData"):
            if props.get(key) and not is_masked(props[key]):
                for item, value in (props[key] or {}).items():
                    flag(value, f"{key}.{item}")
        return problems
    walk(props, "")
    return problems


# --- stack rules -----------------------------------------------------------------------------


def _labels_match(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _namespace(resource: Resource) -> str | None:
    return _get(resource.props, "metadata", "namespace")


def _environment(resources: list[Resource]) -> str | None:
    for r in resources:
        label = _get(r.props, "metadata", "labels", ENVIRONMENT_LABEL)
        if r.type == NAMESPACE and label:
            return str(label)
    return None


def production_replicas(resources: list[Resource]) -> list[tuple[str, str]]:
    """In production nothing serving may hang on one pod: a node drain would take it down."""
    if _environment(resources) != "production":
        return []
    autoscaled = {
        _get(r.props, "spec", "scaleTargetRef", "name"): _get(r.props, "spec", "minReplicas")
        for r in resources
        if r.type == HPA
    }
    problems = []
    for r in resources:
        if r.type != DEPLOYMENT:
            continue
        name = _get(r.props, "metadata", "name")
        replicas = autoscaled.get(name) or _get(r.props, "spec", "replicas") or 1
        if replicas < PRODUCTION_MIN_REPLICAS:
            problems.append(
                (r.name, f"runs {replicas} replica(s) in production; at least 2 are required")
            )
    return problems


def pdb_present(resources: list[Resource]) -> list[tuple[str, str]]:
    budgets = [r for r in resources if r.type == PDB]
    problems = []
    for r in resources:
        if r.type != DEPLOYMENT:
            continue
        labels = _get(r.props, "spec", "template", "metadata", "labels") or {}
        covered = any(
            _namespace(b) == _namespace(r)
            and _labels_match(_get(b.props, "spec", "selector") or {}, labels)
            for b in budgets
        )
        if not covered:
            problems.append((r.name, "no PodDisruptionBudget selects its pods"))
    return problems


def default_deny_present(resources: list[Resource]) -> list[tuple[str, str]]:
    """Each namespace with workloads denies all ingress and egress unless a policy allows it."""
    denying = {
        _namespace(r)
        for r in resources
        if r.type == NETWORK_POLICY
        and _get(r.props, "spec", "podSelector") == {}
        and {"Ingress", "Egress"} <= set(_get(r.props, "spec", "policyTypes") or [])
        and not _get(r.props, "spec", "ingress")
        and not _get(r.props, "spec", "egress")
    }
    return [
        (r.name, f"namespace {_namespace(r)!r} has no default-deny NetworkPolicy")
        for r in resources
        if pod_spec(r.type, r.props) is not None and _namespace(r) not in denying
    ]


ResourceRule = Callable[[str, dict[str, Any]], list[str]]
StackRule = Callable[[list[Resource]], list[tuple[str, str]]]
RESOURCE_RULES: dict[str, tuple[ResourceRule, str]] = {
    "pinned-images": (pinned_images, "Container images are pinned by digest."),
    "non-root": (non_root, "Containers run as non-root without privilege escalation."),
    "probes": (probes, "Serving containers have readiness and liveness checks."),
    "resource-limits": (resource_limits, "Containers state CPU and memory requests and limits."),
    SECRETS_RULE: (no_plain_secrets, "Secret values are Pulumi secrets, never plain text."),
}
STACK_RULES: dict[str, tuple[StackRule, str]] = {
    "production-replicas": (production_replicas, "Production serves from at least 2 replicas."),
    "pdb-present": (pdb_present, "Every Deployment is covered by a PodDisruptionBudget."),
    "default-deny-network": (
        default_deny_present,
        "Namespaces with workloads have a default-deny NetworkPolicy.",
    ),
}


def check(resources: list[Resource]) -> list[Violation]:
    """Every rule over every resource: what the policy pack would refuse."""
    found = [
        Violation(policy, r.name, message)
        for r in resources
        for policy, (rule, _) in RESOURCE_RULES.items()
        for message in rule(r.type, r.props)
    ]
    found += [
        Violation(policy, name, message)
        for policy, (rule, _) in STACK_RULES.items()
        for name, message in rule(resources)
    ]
    return found
