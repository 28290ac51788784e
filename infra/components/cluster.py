"""Cluster: the locked-down namespace a serving environment runs in on Kubernetes.

Everything is denied unless allowed: Pod Security "restricted", default-deny network policy for
both directions plus the few flows serving needs, quota and default limits, and a deployer
identity that can roll out the model but not read secrets or grant itself more rights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from modelyard.contracts.labels import ENVIRONMENT_LABEL

# What the CI deployer may touch, resource by resource: no wildcards, no secrets, and none of
# escalate/bind/impersonate, so a leaked deployer token cannot widen its own rights.
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]
DEPLOYER_RULES: list[Any] = [  # PolicyRuleArgsDict-shaped
    {"api_groups": ["apps"], "resources": ["deployments"], "verbs": _WRITE},
    {"api_groups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {
        "api_groups": [""],
        "resources": ["services", "configmaps", "serviceaccounts"],
        "verbs": _WRITE,
    },
    {"api_groups": [""], "resources": ["pods", "pods/log", "events", "endpoints"], "verbs": _READ},
    # The canary's analysis reads each pod's /metrics; the smoke test reaches the Service.
    {"api_groups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
    {
        "api_groups": [""],
        "resources": ["pods/portforward", "services/portforward"],
        "verbs": ["create"],
    },
    {"api_groups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _WRITE},
    {"api_groups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    {"api_groups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _READ},
    # The train stage on Kubernetes (pipeline.trainIn): its Job, and the dataset streamed into
    # the Job's pod through `kubectl exec` (pipelines/pipeline/training_job.py).
    {"api_groups": ["batch"], "resources": ["jobs"], "verbs": _WRITE},
    {"api_groups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
    {"api_groups": [""], "resources": ["persistentvolumeclaims"], "verbs": _READ},
]


@dataclass(frozen=True)
class Quota:
    """Namespace-wide ceilings (Kubernetes quantities)."""

    requests_cpu: str
    requests_memory: str
    limits_cpu: str
    limits_memory: str
    pods: int


@dataclass(frozen=True)
class ClusterArgs:
    namespace: str
    environment: str
    quota: Quota
    # Applied to containers that state no resources of their own.
    default_requests: Mapping[str, str]
    default_limits: Mapping[str, str]
    # Pods the serving allows apply to, and where their traffic may come from / go to.
    serving_selector: Mapping[str, str]
    serving_port: int
    ingress_namespaces: Sequence[str] = ()
    egress_cidrs: Sequence[str] = ()
    egress_ports: Sequence[int] = ()
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.serving_selector:
            raise ValueError("ClusterArgs.serving_selector must select the serving pods")
        if self.egress_cidrs and not self.egress_ports:
            raise ValueError("ClusterArgs.egress_ports is empty: name the ports egress may use")
        if self.quota.pods < 1:
            raise ValueError("ClusterArgs.quota.pods must be at least 1")


class Cluster(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    deployer_service_account: pulumi.Output[str]
    serving_service_account: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        args.validate()
        super().__init__("modelyard:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        labels = {
            "app.kubernetes.io/part-of": "modelyard",
            ENVIRONMENT_LABEL: args.environment,
            **args.extra_labels,
        }

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgsDict:
            return {"name": object_name, "namespace": ns, "labels": labels}

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": ns,
                "labels": {
                    **labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=child,
        )
        # Everything below lives in the namespace: create it first.
        inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=meta("default-deny-all"),
            spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
            opts=inside,
        )
        serving_pods: k8s.meta.v1.LabelSelectorArgsDict = {
            "match_labels": dict(args.serving_selector)
        }
        if args.ingress_namespaces:
            sources: list[k8s.networking.v1.NetworkPolicyPeerArgsDict] = [
                {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": source}}}
                for source in args.ingress_namespaces
            ]
            k8s.networking.v1.NetworkPolicy(
                f"{name}-allow-serving-ingress",
                metadata=meta("allow-serving-ingress"),
                spec={
                    "pod_selector": serving_pods,
                    "policy_types": ["Ingress"],
                    "ingress": [
                        {
                            "from_": sources,
                            "ports": [{"protocol": "TCP", "port": args.serving_port}],
                        }
                    ],
                },
                opts=inside,
            )
        # Name resolution through the cluster DNS only.
        dns_spec: k8s.networking.v1.NetworkPolicySpecArgsDict = {
            "pod_selector": serving_pods,
            "policy_types": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespace_selector": {
                                "match_labels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [
                        {"protocol": "UDP", "port": 53},
                        {"protocol": "TCP", "port": 53},
                    ],
                }
            ],
        }
        k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-dns-egress",
            metadata=meta("allow-dns-egress"),
            spec=dns_spec,
            opts=inside,
        )
        if args.egress_cidrs:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-allow-model-egress",
                metadata=meta("allow-model-egress"),
                spec={
                    "pod_selector": serving_pods,
                    "policy_types": ["Egress"],
                    "egress": [
                        {
                            "to": [{"ip_block": {"cidr": cidr}} for cidr in args.egress_cidrs],
                            "ports": [{"protocol": "TCP", "port": p} for p in args.egress_ports],
                        }
                    ],
                },
                opts=inside,
            )

        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("modelyard-quota"),
            spec={
                "hard": {
                    "requests.cpu": args.quota.requests_cpu,
                    "requests.memory": args.quota.requests_memory,
                    "limits.cpu": args.quota.limits_cpu,
                    "limits.memory": args.quota.limits_memory,
                    "pods": str(args.quota.pods),
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                }
            },
            opts=inside,
        )
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("modelyard-limits"),
            spec={
                "limits": [
                    {
                        "type": "Container",
                        "default": dict(args.default_limits),
                        "default_request": dict(args.default_requests),
                    }
                ]
            },
            opts=inside,
        )

        # Nothing in the pods talks to the Kubernetes API: no token is mounted anywhere.
        serving_sa = k8s.core.v1.ServiceAccount(
            f"{name}-serving-sa",
            metadata=meta("modelyard-serving"),
            automount_service_account_token=False,
            opts=inside,
        )
        deployer_sa = k8s.core.v1.ServiceAccount(
            f"{name}-deployer-sa",
            metadata=meta("modelyard-deployer"),
            automount_service_account_token=False,
            opts=inside,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-deployer-role",
            metadata=meta("modelyard-deployer"),
            rules=DEPLOYER_RULES,
            opts=inside,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-deployer-binding",
            metadata=meta("modelyard-deployer"),
            role_ref={
                "api_group": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role.metadata.name,
            },
            subjects=[
                {"kind": "ServiceAccount", "name": deployer_sa.metadata.name, "namespace": ns}
            ],
            opts=inside,
        )

        self.namespace = namespace.metadata.name
        self.serving_service_account = serving_sa.metadata.name
        self.deployer_service_account = deployer_sa.metadata.name
        self.register_outputs(
            {
                "namespace": self.namespace,
                "servingServiceAccount": self.serving_service_account,
                "deployerServiceAccount": self.deployer_service_account,
            }
        )
