"""The production path on one machine, as the pipeline runs it: the platform (registry, MLflow) by
the real engine in Docker, staging and production as namespaces of the local Kubernetes, and
`modelyard pipeline run` from data to production pods: the package stage pushes the serving image,
each deploy stage is a `pulumi up` of its environment's stack, the smoke test goes through the
staging Service. Then what a platform engineer checks by hand, checked here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.infra.local_cluster.registry_trust import trust_registry
from modelyard.infra.local_cluster.runtime import node_ip
from modelyard.infra.local_cluster.settings import ClusterPaths
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.deploy_targets import reachable
from modelyard.pipelines.local_mlflow import free_port

from tests.cluster.conftest import LocalCluster
from tests.docker_helpers import RUN_ID
from tests.helpers import DELETE, MODELYARD, REPO, edit_environment

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]
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
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the project"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *command],
                cwd=self.folder, check=True,
            )  # fmt: skip


@pytest.fixture(scope="module")
def project(
    local_cluster: LocalCluster, engine: None, base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Project]:  # fmt: skip
    created = Project(tmp_path_factory.mktemp("production-path"), local_cluster)
    created.create()
    try:
        yield _provisioned(created, local_cluster)
    finally:
        for env in (*SERVED, created.platform):
            created.cli("infra", "destroy", env)


def _provisioned(created: Project, local_cluster: LocalCluster) -> Project:
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
    created.secrets = {
        "MLFLOW_TRACKING_USERNAME": outputs["mlflowUsername"],
        "MLFLOW_TRACKING_PASSWORD": outputs["mlflowPassword"],
        "MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD": outputs["registryPassword"],
    }
    return created


@pytest.fixture(scope="module")
def pipeline_run(project: Project) -> subprocess.CompletedProcess[str]:
    data = project.folder / "churn.csv"
    generate_churn(4000, seed=7).to_csv(data, index=False)
    return project.cli("pipeline", "run", project.platform, "--data", str(data))


def _deployment(project: Project, env: str) -> dict[str, Any]:
    found = json.loads(project.cluster.kubectl(
        "get", "deployments", "-n", project.namespace(env), "-o", "json"
    ))["items"]  # fmt: skip
    (only,) = found
    return dict(only)


def test_the_pipeline_runs_from_data_to_production_pods(
    project: Project, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    said = pipeline_run.stdout + pipeline_run.stderr
    assert pipeline_run.returncode == 0, said[-6000:]
    # Both deploy stages are a `pulumi up` of their stacks; the smoke test used the Service.
    assert "staging: pulumi up" in said and "production: pulumi up" in said
    assert f"k8s-service://{project.namespace('staging')}/" in said
    for env in SERVED:
        deployment = _deployment(project, env)
        assert deployment["status"].get("readyReplicas") == (2 if env == "production" else 1)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # The image the package stage pushed, pinned by digest, pulled with the pull secret.
        assert (
            container["image"].startswith(f"{project.repository}:")
            and "@sha256:" in container["image"]
        )
        assert pod["imagePullSecrets"]


def test_production_pods_serve_the_registered_model_through_the_service(
    project: Project, pipeline_run: subprocess.CompletedProcess[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import mlflow
    import pandas as pd

    assert pipeline_run.returncode == 0
    variables = project.variables()
    # Through the environment (restored after the test): mlflow.set_tracking_uri would outlive it.
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "KUBECONFIG"):
        monkeypatch.setenv(key, variables[key])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{project.address}:{project.ports['mlflow']}")
    version = mlflow.MlflowClient().get_model_version_by_alias("churn", "production").version
    booster = mlflow.lightgbm.load_model(f"models:/churn/{version}")
    rows = generate_churn(20, seed=11).drop(columns=["churned"])
    # The booster's own predictions: text columns as the categories it was trained with.
    as_trained = rows.copy()
    text = [c for c in rows.columns if not pd.api.types.is_numeric_dtype(rows[c])]
    for column, categories in zip(text, booster.pandas_categorical, strict=True):
        as_trained[column] = pd.Categorical(rows[column], categories=categories)
    expected = booster.predict(as_trained)
    namespace = project.namespace("production")
    (service,) = json.loads(project.cluster.kubectl(
        "get", "services", "-n", namespace, "-o", "json"))["items"]  # fmt: skip
    address = f"k8s-service://{namespace}/{service['metadata']['name']}"
    with reachable(address) as url:
        identity = json.loads(urllib.request.urlopen(f"{url}/version", timeout=10).read())
        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        answered = json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
    assert str(identity["model_version"]) == str(version)
    assert answered == pytest.approx(list(expected), rel=1e-9)


def test_pods_pass_restricted_pod_security_on_a_read_only_root(
    project: Project, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    assert pipeline_run.returncode == 0
    for env in SERVED:
        namespace = json.loads(project.cluster.kubectl(
            "get", "namespace", project.namespace(env), "-o", "json"))  # fmt: skip
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        pods = json.loads(project.cluster.kubectl(
            "get", "pods", "-n", project.namespace(env), "-o", "json"))["items"]  # fmt: skip
        running = [p for p in pods if p["status"]["phase"] == "Running"]
        assert running
        for pod in running:
            (container,) = pod["spec"]["containers"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            uid = project.cluster.kubectl("exec", "-n", project.namespace(env),
                                          pod["metadata"]["name"], "--", "id", "-u")  # fmt: skip
            assert uid.strip() == "10001"


def test_credentials_stay_encrypted_in_the_stack_state(
    project: Project, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    assert pipeline_run.returncode == 0
    kubeconfig = yaml.safe_load(Path(project.variables()["KUBECONFIG"]).read_text())
    client_key = kubeconfig["users"][0]["user"]["client-key-data"]
    for env in SERVED:
        state = project.folder / "pulumi-state/.pulumi/stacks/modelyard" / f"{env}.json"
        assert client_key not in state.read_text()


def test_a_second_up_changes_nothing_and_the_history_names_the_version(
    project: Project, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    """The autoscaler and `pulumi up` do not fight over replicas; nothing drifts."""
    assert pipeline_run.returncode == 0
    again = json.loads(project.ok("infra", "up", "production", "--json"))
    assert {k: v for k, v in again["changes"].items() if v and k != "unchanged"} == {}
    history = project.ok("history", "churn", "--env", "production")
    version = str(_deployment(project, "production")["spec"]["template"]["metadata"]["labels"]
                  ["modelyard.io/model-version"]).removeprefix("v")  # fmt: skip
    assert version in history
