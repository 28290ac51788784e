"""Training on the cluster (pipeline.trainIn kubernetes), for real: staging's stack makes the Job's
volume, identity and Secrets; `modelyard pipeline stage train` builds and pushes the training image
with this checkout's code, streams the data onto the volume (or the pods fetch the URI `data push`
printed) and runs a Job in staging's namespace that trains, gates and logs to the platform's
MLflow; the register stage registers what it made.
A training pod deleted mid-fit is replaced and resumes from its checkpoint on the volume. Mistakes
end with one message: a Job no node can hold before any pod, a Job that fails with its pod's last
lines. Two workers train one model over LightGBM's network on data pushed to staging's MLflow, and
a worker lost mid-fit costs a restart, not the training.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from modelyard.contracts import tags, training_job
from modelyard.infra.local_cluster.settings import LOCAL_STORAGE_CLASS
from modelyard.ml.data.dataset import read_dataset
from modelyard.ml.data.sample import generate_churn

from tests.cluster.project import Project
from tests.helpers import MODELYARD, edit_environment, push_edit

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]
ENV = "staging"


@pytest.fixture(scope="module")
def trains_on_cluster(project: Project) -> Iterator[Project]:
    """staging set to train on the cluster, its stack brought up to date (as a platform engineer
    lands the change and runs `infra up`)."""
    edit_environment(project.environments, ENV, {
        "pipeline.trainIn": "kubernetes",
        "pipeline.package.registry": project.registry,
        "pipeline.package.username": _registry_user(project),
        "training.kubernetes.storageClass": LOCAL_STORAGE_CLASS,
        "training.kubernetes.resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                          "limits": {"cpu": "2", "memory": "2Gi"}},
        # Long enough a fit to delete its pod midway; one trial.
        "training.numBoostRound": 400, "training.earlyStoppingRounds": 400,
        "training.checkpointEvery": 5, "training.budget": {"trials": 1, "minutes": 10},
        "training.gate": "roc_auc >= 0.6", "training.params": {"learning_rate": 0.02},
    })  # fmt: skip
    push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    password = project.secrets["MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD"]
    project.set_secret(ENV, "pipeline.package.password", password)
    project.ok("infra", "up", ENV)
    yield project


def _registry_user(project: Project) -> str:
    """The platform registry's user the package stage pushes with (the platform's file)."""
    platform = yaml.safe_load(
        (project.environments / f"Pulumi.{project.platform}.yaml").read_text()
    )
    return str(platform["config"]["modelyard:pipeline"]["package"]["username"])


@pytest.fixture(scope="module")
def data(trains_on_cluster: Project) -> Path:
    """Enough rows that a fit lasts long enough to delete its pod midway."""
    path = trains_on_cluster.folder / "churn-40k.parquet"
    generate_churn(40_000, seed=21).to_parquet(path, index=False)
    return path


class Stage:
    """`modelyard pipeline stage train` running in the background, its output line by line."""

    def __init__(self, project: Project, data: Path | str, run_id: str) -> None:
        self.lines: list[str] = []
        self.started = time.time()
        self.process = subprocess.Popen(
            [MODELYARD, "pipeline", "stage", "train", ENV, "--data", str(data), "--run-id", run_id],
            cwd=project.folder, env=project.variables(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout: float = 1200) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def _job(project: Project, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        project.cluster.kubectl("get", "job", name, "-n", project.namespace(ENV), "-o", "json")
    )
    return found


def _wait_for_no_pods(project: Project, job: str) -> None:
    deadline = time.monotonic() + 60
    selector = f"job-name={job}"
    while "pod/" in project.cluster.kubectl(
        "get", "pods", "-n", project.namespace(ENV), "-l", selector, "-o", "name"
    ):
        assert time.monotonic() < deadline, f"the pods of Job {job} are still there"
        time.sleep(1)


def _delete_the_pod_once_it_checkpointed(
    project: Project, stage: Stage, name: str, rank: int = 0
) -> str:
    """Delete the Job's pod of `rank` (as a node drain or a person would) once the checkpoint on
    its volume holds 20 trees: a checkpoint this stage's Job wrote, not one an earlier Job left
    (deleted while the workers still form LightGBM's network, the fit is not yet midway)."""
    volumes = project.cluster.state / "cluster" / "volumes"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        assert stage.process.poll() is None, f"the stage ended first:\n{stage.output[-3000:]}"
        checkpoints = [path for path in volumes.glob("*/training/*/fit-*/model.txt")
                       if path.stat().st_mtime >= stage.started]  # fmt: skip
        if checkpoints and checkpoints[0].read_text().count("Tree=") >= 20:
            pod = project.cluster.kubectl(
                "get", "pods", "-n", project.namespace(ENV), "--selector",
                f"job-name={name},{training_job.INDEX_ANNOTATION}={rank}",
                "-o", "jsonpath={.items[0].metadata.name}",
            )  # fmt: skip
            project.cluster.kubectl(
                "delete", "pod", pod, "-n", project.namespace(ENV), "--wait=false"
            )
            return pod
        time.sleep(0.1)
    raise AssertionError(f"training never reached its kill point:\n{stage.output[-3000:]}")


def _register(
    project: Project, data: Path | str, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Any]:
    """The register stage after the Job, then MLflow's client and the run the Job trained."""
    import mlflow

    registered = project.ok("pipeline", "stage", "register", ENV, "--data", str(data),
                            "--run-id", run_id)  # fmt: skip
    assert "registered churn version" in registered
    variables = project.variables()
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, variables[key])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{project.address}:{project.ports['mlflow']}")
    client = mlflow.MlflowClient()
    context = json.loads(
        (project.folder / "state" / "pipeline" / run_id / "context.json").read_text()
    )
    return client, client.get_run(context["training_run_id"])


def test_a_job_trains_resumes_after_its_pod_is_deleted_and_its_model_registers(
    trains_on_cluster: Project, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    project = trains_on_cluster
    run_id = "cluster-train"
    stage = Stage(project, data, run_id)
    name = f"train-{run_id}".lower()
    deleted = _delete_the_pod_once_it_checkpointed(project, stage, name)
    code = stage.wait()
    assert code == 0, stage.output[-5000:]
    said = stage.output
    assert f"training Job {name} in namespace {project.namespace(ENV)}" in said
    assert "onto the Job's volume" in said
    # The replacement pod went on from the checkpoint the deleted one left on the volume.
    assert f"--- pod {deleted} ---" in said and said.count("--- pod ") == 2
    assert "resume #1" in said and "resuming from its checkpoint" in said

    job = _job(project, name)
    assert job["status"]["succeeded"] == 1
    pod = job["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    # This checkout's code, pushed to the platform's registry and pulled by digest.
    assert train["image"].startswith(f"{project.registry}/modelyard-train-churn:")
    assert "@sha256:" in train["image"]
    assert pod["imagePullSecrets"] == [{"name": training_job.PULL_SECRET}]

    # Its result is kept on the Job and its pods are gone: no finished pod pins the volume (the
    # stack's `destroy` would wait on it).
    assert training_job.RESULT_ANNOTATION in job["metadata"]["annotations"]
    _wait_for_no_pods(project, name)

    # Run again (Jenkins retrying the stage after losing its agent): the run's Job is followed,
    # not trained a second time.
    again = project.ok("pipeline", "stage", "train", ENV, "--data", str(data), "--run-id", run_id)
    assert f"following training Job {name}, started before" in again
    assert "streaming" not in again

    client, run = _register(project, data, run_id, monkeypatch)
    # Lineage: the whole file the stage streamed, the run that trained it, one resume.
    assert run.data.tags[tags.Lineage.DATASET_DIGEST] == read_dataset(data).digest
    assert run.data.tags[tags.Lineage.PIPELINE_RUN_ID] == run_id
    assert run.data.tags[tags.RESUMES] == "1"
    assert run.data.metrics["roc_auc"] >= 0.6
    versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert len(versions) == 1  # one version, not one per pod
    # An ordinary LightGBM model, as the server loads it.
    model = mlflow.lightgbm.load_model(f"models:/churn/{versions[0].version}")
    assert model.num_trees() > 20


def test_a_job_no_node_can_hold_is_refused_before_any_pod(
    trains_on_cluster: Project, data: Path
) -> None:
    project = trains_on_cluster
    edit_environment(project.environments, ENV, {
        "training.kubernetes.resources.requests": {"cpu": "64", "memory": "512Mi"},
        "training.kubernetes.resources.limits": {"cpu": "64", "memory": "2Gi"},
    })  # fmt: skip
    push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    try:
        done = project.cli("pipeline", "stage", "train", ENV, "--data", str(data),
                           "--run-id", "too-big")  # fmt: skip
    finally:
        edit_environment(project.environments, ENV, {
            "training.kubernetes.resources.requests": {"cpu": "500m", "memory": "512Mi"},
            "training.kubernetes.resources.limits": {"cpu": "2", "memory": "2Gi"},
        })  # fmt: skip
        push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    (message,) = done.stderr.strip().splitlines()
    assert "modelyard:training.kubernetes.resources.requests (cpu 64, memory 512Mi)" in message
    assert "fit no node of the cluster" in message and "Lower the requests" in message
    jobs = project.cluster.kubectl("get", "jobs", "-n", project.namespace(ENV), "-o", "name")
    assert "too-big" not in jobs


def test_a_failing_job_ends_the_stage_with_its_pods_last_lines(
    trains_on_cluster: Project, data: Path
) -> None:
    project = trains_on_cluster
    edit_environment(project.environments, ENV, {"training.gate": "roc_auc >= 0.999"})
    push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    try:
        done = project.cli("pipeline", "stage", "train", ENV, "--data", str(data),
                           "--run-id", "unreachable-gate")  # fmt: skip
    finally:
        edit_environment(project.environments, ENV, {"training.gate": "roc_auc >= 0.6"})
        push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    assert done.returncode == 2, done.stdout + done.stderr
    error = done.stderr
    assert "the training Job train-unreachable-gate failed" in error
    # The pod's own last lines say why; a reported mistake is not retried.
    assert "gate `roc_auc >= 0.999` not met" in error and "Nothing was registered" in error
    assert "GIT_PYTHON" not in error  # no page of GitPython's advice among them
    job = _job(project, "train-unreachable-gate")
    assert job["status"].get("failed") == 1
    _wait_for_no_pods(project, "train-unreachable-gate")


def test_two_workers_train_one_model_and_a_lost_worker_costs_a_restart_not_the_fit(
    trains_on_cluster: Project, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    project = trains_on_cluster
    edit_environment(project.environments, ENV, {
        "training.kubernetes.workers": 2,
        # A survivor whose peer went without a word ends within a minute (StallWatch), not never.
        "training.kubernetes.stallTimeoutSeconds": 60,
    })  # fmt: skip
    push_edit(project.environments / f"Pulumi.{ENV}.yaml")
    # Each worker reads only its rows of a Parquet file: a CSV is refused before any pod.
    as_csv = data.with_suffix(".csv")
    pd.read_parquet(data).to_csv(as_csv, index=False)
    refused = project.cli("pipeline", "stage", "train", ENV, "--data", str(as_csv),
                          "--run-id", "two-from-csv")  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (message,) = refused.stderr.strip().splitlines()
    assert str(as_csv) in message and "Give --data a .parquet file" in message
    # The data where the cluster reads it: staging's MLflow. A URI that names nothing is refused
    # before any pod, with one line.
    uri = project.ok("data", "push", ENV, "--data", str(data)).strip()
    missing = uri.replace(f"/{data.name}", "/gone.parquet")
    nowhere = project.cli("pipeline", "stage", "train", ENV, "--data", missing,
                          "--run-id", "two-from-nowhere")  # fmt: skip
    assert nowhere.returncode == 2, nowhere.stdout + nowhere.stderr
    (message,) = nowhere.stderr.strip().splitlines()
    assert f"--data {missing}: cannot be read" in message
    jobs = project.cluster.kubectl("get", "jobs", "-n", project.namespace(ENV), "-o", "name")
    assert "two-from-csv" not in jobs and "two-from-nowhere" not in jobs
    project.ok("infra", "up", ENV)  # the workers' NetworkPolicy, room for two pods in the quota
    run_id = "cluster-train-two"
    # The workers' data container fetches the URI onto the volume: nothing is streamed from here.
    stage = Stage(project, uri, run_id)
    name = f"train-{run_id}"
    deleted = _delete_the_pod_once_it_checkpointed(project, stage, name, rank=1)
    code = stage.wait()
    assert code == 0, stage.output[-5000:]
    said = stage.output
    assert "streaming " not in said, said[-5000:]
    # Worker 1's pod, then its replacement; the leader's fit failed with it and its next pod
    # resumed from the checkpoint.
    assert f"worker 1 started in {deleted}" in said, said[-5000:]
    assert said.count("worker 1 started in") == 2, said[-5000:]
    assert said.count("--- pod ") == 2, said[-5000:]
    assert "resume #1" in said and "resuming from its checkpoint" in said, said[-5000:]
    job = _job(project, name)
    assert (job["spec"]["completions"], job["status"]["succeeded"]) == (2, 2)

    client, run = _register(project, uri, run_id, monkeypatch)
    assert run.data.metrics["roc_auc"] >= 0.6
    # The lineage names the URI, and the digest of the whole file the workers shared.
    assert run.data.tags[tags.Lineage.DATASET_PATH] == uri
    assert run.data.tags[tags.Lineage.DATASET_DIGEST] == read_dataset(data).digest
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    model = mlflow.lightgbm.load_model(f"models:/churn/{version.version}")
    assert model.num_trees() > 20  # one ordinary LightGBM model
