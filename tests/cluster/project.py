"""A project folder as a platform engineer has one: the program (linked), a platform stack in
Docker on free ports published on this machine's address, and staging and production as namespaces
of the local cluster. The production-path and progressive-delivery tests share one (session)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.infra.local_cluster.registry_trust import trust_registry
from modelyard.infra.local_cluster.runtime import node_ip
from modelyard.infra.local_cluster.settings import ClusterPaths
from modelyard.pipelines.local_mlflow import free_port

from tests.docker_helpers import RUN_ID
from tests.helpers import DELETE, MODELYARD, REPO, edit_environment, push_edit, with_origin

if TYPE_CHECKING:
    from tests.cluster.local_cluster import LocalCluster

PASSPHRASE = "modelyard-example"  # the shipped stack files' example passphrase (README)
SERVED = ("staging", "production")


class Project:
    """A project folder: the program (linked), a platform stack `platform-<run>` on free ports
    published on this machine's address (pods reach it there), and staging and production on
    namespaces of the local cluster of their own."""

    def __init__(self, folder: Path, cluster: LocalCluster) -> None:
        self.folder = folder
        self.cluster = cluster
        self.platform = f"platform-{RUN_ID}"
        self.address = node_ip()
        self.ports = {"registry": free_port(), "mlflow": free_port()}
        self.registry = f"{self.address}:{self.ports['registry']}"
        self.repository = f"{self.registry}/modelyard-serving"
        self.secrets: dict[str, str] = {}
        # env -> the bearer tokens its model server takes: scoring ones by name, and "metrics".
        self.tokens: dict[str, dict[str, str]] = {}

    @property
    def environments(self) -> Path:
        return self.folder / "environments"

    def namespace(self, env: str) -> str:
        return f"modelyard-{env}-{RUN_ID}"

    def variables(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.secrets,
            "PULUMI_BACKEND_URL": (self.folder / "pulumi-state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "MODELYARD_STATE_DIR": str(self.folder / "state"),
            "KUBECONFIG": self.cluster.status()["kubeconfig"],
        }

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MODELYARD, *args], cwd=self.folder, env=self.variables(), capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return done.stdout

    def set_secret(self, env: str, key: str, value: str) -> None:
        """`pulumi config set --secret --path`, as a platform engineer stores a secret (the value
        on stdin, never on a command line)."""
        from modelyard.infra.automation import pulumi_command

        pulumi = pulumi_command().command
        for command, stdin in (
            ([pulumi, "stack", "select", "--create", env], None),
            ([pulumi, "config", "set", "--secret", "--path", "--stack", env, f"modelyard:{key}"],
             value),
        ):  # fmt: skip
            done = subprocess.run(command, cwd=self.folder, env=self.variables(), input=stdin,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            assert done.returncode == 0, f"{command[:4]}: {done.stderr}"
        push_edit(self.environments / f"Pulumi.{env}.yaml")

    def bearer(self, env: str) -> dict[str, str]:
        """The header the project's own callers score `env` with (its `pipeline` token)."""
        return {"Authorization": f"Bearer {self.tokens[env]['pipeline']}"}

    @staticmethod
    def pulumi() -> str:
        from modelyard.infra.automation import pulumi_command

        return pulumi_command().command

    def remove_config(self, env: str, key: str) -> None:
        """`pulumi config rm --path`, committed and pushed like any edit of the file."""
        command = [self.pulumi(), "config", "rm", "--path", "--stack", env, f"modelyard:{key}"]
        done = subprocess.run(command, cwd=self.folder, env=self.variables(),
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        push_edit(self.environments / f"Pulumi.{env}.yaml")

    def create(self) -> None:
        for part in ("contracts", "infra", "ml", "pipelines", "tests", ".venv", "tools"):
            (self.folder / part).symlink_to(REPO / part)
        shutil.copy(REPO / "Pulumi.yaml", self.folder)
        self.environments.mkdir()
        for name in ("local", *SERVED):
            shutil.copy(REPO / "environments" / f"Pulumi.{name}.yaml", self.environments)
        (self.environments / "Pulumi.local.yaml").rename(
            self.environments / f"Pulumi.{self.platform}.yaml"
        )
        tracking = f"http://{self.address}:{self.ports['mlflow']}"
        edit_environment(self.environments, self.platform, {
            "mlflow.trackingUri": tracking,
            "serving.platform": "process", "serving.localPort": free_port(),
            "serving.imageRepository": "modelyard-serving",
            "platform.docker.bindAddress": self.address, "platform.docker.address": self.address,
            "platform.registry.port": self.ports["registry"],
            "platform.mlflow.port": self.ports["mlflow"],
            "platform.mlflow.allowedHosts": [self.address],
            "training.numBoostRound": 60, "training.gate": "roc_auc >= 0.6",
            "pipeline.smokeRequests": 50, "notify.webhooks": DELETE,
        })  # fmt: skip
        for env in SERVED:
            edit_environment(self.environments, env, {
                "platform": DELETE, "hosts": DELETE, "notify": DELETE,
                "mlflow.trackingUri": tracking,
                "promotion.gates": ["roc_auc >= 0.6"],
                "serving.namespace": self.namespace(env),
                "serving.kubeconfig": DELETE,  # the pipeline's KUBECONFIG says which cluster
                "serving.imageRepository": self.repository,
                # Never pulled: the pipeline promotes (writing `image`) before it deploys.
                "serving.bootstrapImage": f"{self.repository}:none@sha256:{'0' * 64}",
                "serving.replicas": 1, "serving.autoscaling.maxReplicas": 2,
                "serving.resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "768Mi"}},
                "serving.network.egressPorts": [self.ports["registry"], self.ports["mlflow"]],
            })  # fmt: skip
        edit_environment(self.environments, "staging", {"promotion.trainedFor": [self.platform]})
        edit_environment(self.environments, "production", {
            "promotion.soakMinutes": 0, "promotion.approvals.required": 0,
            # Drift evidence comes from the local servers' samples; the pods' are not read yet.
            "promotion.maxDrift": DELETE,
            "serving.replicas": 2, "serving.autoscaling.maxReplicas": 3,  # the policy's minimum
        })  # fmt: skip
        # The project's repository: promotions, rollbacks and canary steps are pushed there.
        with_origin(self.folder, self.remote)

    @property
    def remote(self) -> Path:
        return self.folder.with_name(self.folder.name + "-repository.git")


def provisioned(created: Project, local_cluster: LocalCluster) -> Project:
    platform = json.loads(created.ok("infra", "up", created.platform, "--json", "--show-secrets"))
    outputs = platform["outputs"]
    trust_registry(created.registry, outputs["registryCaCertificate"],
                   ClusterPaths(local_cluster.state / "cluster"))  # fmt: skip
    # The package stage pushes with the platform's registry user; the pods pull with it and
    # download models with MLflow's (both Pulumi secrets in the environment files).
    edit_environment(created.environments, created.platform, {
        "pipeline.package.registry": created.registry,
        "pipeline.package.username": outputs["registryUsername"],
    })  # fmt: skip
    created.set_secret(created.platform, "pipeline.package.password", outputs["registryPassword"])
    for env in SERVED:
        edit_environment(created.environments, env, {
            "serving.pullCredentials.username": outputs["registryUsername"],
            "serving.mlflowCredentials.username": outputs["mlflowUsername"],
        })  # fmt: skip
        created.set_secret(env, "serving.pullCredentials.password", outputs["registryPassword"])
        created.set_secret(env, "serving.mlflowCredentials.password", outputs["mlflowPassword"])
        # Tokens of the project's own (the shipped files' are random ones nobody knows).
        created.tokens[env] = {name: secrets.token_urlsafe(24) for name in ("pipeline", "apps")}
        for name, token in created.tokens[env].items():
            created.set_secret(env, f"serving.auth.tokens.{name}", token)
        created.tokens[env]["metrics"] = secrets.token_urlsafe(24)
        created.set_secret(env, "serving.auth.metricsToken", created.tokens[env]["metrics"])
    created.secrets = {
        # The smoke test's (it scores staging).
        "MODELYARD_SERVING_TOKEN": created.tokens["staging"]["pipeline"],
        "MLFLOW_TRACKING_USERNAME": outputs["mlflowUsername"],
        "MLFLOW_TRACKING_PASSWORD": outputs["mlflowPassword"],
        "MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD": outputs["registryPassword"],
    }
    return created
