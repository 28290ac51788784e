"""ModelTraining: what a namespace needs before the train stage can run a Job in it (pipeline.
trainIn `kubernetes`). The Job itself is a run, not infrastructure: the stage creates it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from modelyard.contracts import training_job
from modelyard.contracts.labels import ENVIRONMENT_LABEL
from modelyard.infra.components.model_serving import SKIP_AWAIT, PullSecret, credentials_file


@dataclass(frozen=True)
class ModelTrainingArgs:
    namespace: pulumi.Input[str]
    environment: str
    storage: str
    storage_class: str | None
    # Where the pods may connect: MLflow (tracking, artifacts), as serving's egress allows.
    egress_cidrs: Sequence[str]
    egress_ports: Sequence[int]
    mlflow_credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    pull_secret: PullSecret | None = None
    workers: int = 1  # training.kubernetes.workers: more than one talk to each other


class ModelTraining(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ModelTrainingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("modelyard:training:ModelTraining", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {**training_job.LABELS, ENVIRONMENT_LABEL: args.environment}

        def meta(object_name: str, **annotations: str) -> k8s.meta.v1.ObjectMetaArgsDict:
            return {"name": object_name, "namespace": args.namespace, "labels": labels,
                    "annotations": annotations}  # fmt: skip

        # Training talks to MLflow, never to the Kubernetes API: no token in the pods.
        k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(training_job.SERVICE_ACCOUNT),
            automount_service_account_token=False,
            opts=child,
        )
        claim: k8s.core.v1.PersistentVolumeClaimSpecArgsDict = {
            # Several workers mount it at once, from whichever nodes they run on: a class that
            # offers ReadWriteMany (NFS, CephFS, the local clusters' shared folder) is needed.
            "access_modes": [training_job.access_mode(args.workers)],
            "resources": {"requests": {"storage": args.storage}},
            "storage_class_name": args.storage_class,  # None: the cluster's default class
        }
        # Bound when the first Job's pod is scheduled (WaitForFirstConsumer classes): not awaited.
        # Its access mode cannot change: another number of workers replaces it under its name
        # (its checkpoints and staged data go with it; the stage removes a Job's pods when done).
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-state",
            metadata=meta(training_job.STATE_CLAIM, **{SKIP_AWAIT: "true"}),
            spec=claim,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        pods: k8s.meta.v1.LabelSelectorArgsDict = {"match_labels": dict(training_job.LABELS)}
        egress: list[k8s.networking.v1.NetworkPolicyEgressRuleArgsDict] = [
            {
                "to": [
                    {
                        "namespace_selector": {
                            "match_labels": {"kubernetes.io/metadata.name": "kube-system"}
                        },
                        "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        ]
        if args.egress_cidrs:
            egress.append({
                "to": [{"ip_block": {"cidr": cidr}} for cidr in args.egress_cidrs],
                "ports": [{"protocol": "TCP", "port": port} for port in args.egress_ports],
            })  # fmt: skip
        # The namespace denies everything by default; training reaches DNS and MLflow only.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata=meta("allow-training-egress"),
            spec={"pod_selector": pods, "policy_types": ["Egress"], "egress": egress},
            opts=child,
        )
        if args.workers > 1:
            # The workers of one Job meet over LightGBM's network (ml/training/distributed.py):
            # training pods reach each other on its ports, and nothing else does.
            peers: list[k8s.networking.v1.NetworkPolicyPeerArgsDict] = [{"pod_selector": pods}]
            ports: list[k8s.networking.v1.NetworkPolicyPortArgsDict] = [{
                "protocol": "TCP",
                "port": training_job.NETWORK_PORT,
                "end_port": training_job.NETWORK_PORT + training_job.NETWORK_PORTS - 1,
            }]  # fmt: skip
            k8s.networking.v1.NetworkPolicy(
                f"{name}-network",
                metadata=meta("allow-training-network"),
                spec={
                    "pod_selector": pods,
                    "policy_types": ["Ingress", "Egress"],
                    "ingress": [{"from_": peers, "ports": ports}],
                    "egress": [{"to": peers, "ports": ports}],
                },
                opts=child,
            )
        if args.mlflow_credentials is not None:
            k8s.core.v1.Secret(
                f"{name}-mlflow",
                metadata=meta(training_job.MLFLOW_SECRET),
                type="Opaque",
                string_data={"credentials": credentials_file(*args.mlflow_credentials)},
                opts=child,
            )
        if args.pull_secret is not None:
            k8s.core.v1.Secret(
                f"{name}-pull",
                metadata=meta(training_job.PULL_SECRET),
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": args.pull_secret.docker_config()},
                opts=child,
            )
        self.register_outputs({})
