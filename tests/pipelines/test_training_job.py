"""The Job the train stage creates on Kubernetes (pipeline.trainIn kubernetes), as it is sent to
the cluster: locked down as the namespace's Pod Security demands, pinned by digest, credentials
by reference only, and a reported mistake never retried. The Job running for real is in
tests/cluster/test_training_on_cluster.py."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from modelyard.contracts import training_job, variables
from modelyard.pipelines.pipeline.training_job import code_context, job_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from test_render_support import training_job_manifest


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    return training_job_manifest()


def test_every_container_runs_as_restricted_pod_security_requires(job: dict[str, Any]) -> None:
    assert job["metadata"]["namespace"] == "modelyard-staging"  # serving.namespace
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == training_job.SERVICE_ACCOUNT
    for container in (*pod["initContainers"], *pod["containers"]):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, container["name"]
        assert "@sha256:" in container["image"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not any("hostPath" in v for v in volumes.values())
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == training_job.STATE_CLAIM


def test_credentials_reach_the_pod_as_secrets_by_name_only(job: dict[str, Any]) -> None:
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": training_job.PULL_SECRET}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["mlflow"]["secret"]["secretName"] == training_job.MLFLOW_SECRET
    (train,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in train["env"]}
    assert env["HOME"] == training_job.HOME
    assert not [name for name in env if "PASSWORD" in name or "TOKEN" in name]
    assert "not-read-here" not in json.dumps(job)


def test_the_job_trains_the_staged_data_and_fails_at_once_on_a_reported_mistake(
    job: dict[str, Any],
) -> None:
    (train,) = job["spec"]["template"]["spec"]["containers"]
    assert train["args"][:4] == ["pipeline", "stage", "train", "staging"]
    data = train["args"][train["args"].index("--data") + 1]
    assert data.startswith(f"{training_job.STATE_MOUNT}/{training_job.DATASETS}/")
    assert train["terminationMessagePolicy"] == "FallbackToLogsOnError"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [training_job.USER_ERROR_EXIT]
    assert job["spec"]["backoffLimit"] == 2  # pipeline.maxRestarts' default
    # The training settings' resources, not the serving ones.
    assert train["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


def test_several_workers_are_one_indexed_job_whose_pods_know_their_rank_and_address() -> None:
    job = training_job_manifest(workers=3)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["completionMode"]) == (3, 3, "Indexed")
    assert spec["backoffLimit"] == 2 * 3  # a worker lost mid-fit fails every worker's fit
    (train,) = spec["template"]["spec"]["containers"]
    names = [e["name"] for e in train["env"]]
    given = {e["name"]: e["value"] for e in train["env"] if "value" in e}
    read = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in train["env"]
            if "fieldRef" in e.get("valueFrom", {})}  # fmt: skip
    assert given[variables.TRAINING_WORKERS] == "3"
    # Kubernetes expands $(POD_IP) only from a variable defined before it.
    assert given[variables.TRAINING_LISTEN] == f"$(POD_IP):{training_job.NETWORK_PORT}"
    assert names.index("POD_IP") < names.index(variables.TRAINING_LISTEN)
    assert read == {
        "POD_IP": "status.podIP",
        variables.TRAINING_RANK: f"metadata.annotations['{training_job.INDEX_ANNOTATION}']",
        variables.TRAINING_JOB: "metadata.labels['batch.kubernetes.io/controller-uid']",
    }
    single = training_job_manifest()
    (alone,) = single["spec"]["template"]["spec"]["containers"]
    assert not {variables.TRAINING_WORKERS, "POD_IP"} & {e["name"] for e in alone["env"]}


def test_lightgbm_runs_as_many_threads_as_the_pod_may_use_cores(job: dict[str, Any]) -> None:
    # OpenMP would count the node's cores: on a big node, far more threads than the pod's share,
    # each throttled; on a node two workers share, each spinning against the other.
    (train,) = job["spec"]["template"]["spec"]["containers"]
    (threads,) = [e for e in train["env"] if e["name"] == "OMP_NUM_THREADS"]
    assert threads["valueFrom"]["resourceFieldRef"] == {
        "containerName": "train", "resource": "limits.cpu", "divisor": "1"}  # fmt: skip
    assert train["resources"]["limits"]["cpu"]  # there is a limit to read


@pytest.mark.parametrize(
    ("run_id", "name"),
    [
        ("jenkins-churn-main-42", "train-jenkins-churn-main-42"),
        ("local-20261206-081500", "train-local-20261206-081500"),
        ("Jenkins_Churn/PR 7", "train-jenkins-churn-pr-7"),
        ("x" * 80, "train-" + "x" * 57),
    ],
)
def test_one_job_per_run_named_as_kubernetes_allows(run_id: str, name: str) -> None:
    assert job_name(run_id) == name
    assert len(name) <= 63


def test_the_code_image_holds_files_the_pods_user_can_read_whatever_the_checkout_s_modes(
    environments: Path, tmp_path: Path
) -> None:
    (environments / "Pulumi.staging.yaml").chmod(0o600)  # a umask of 077, or an editor's choice
    code_context(tmp_path, "modelyard-train-churn:base")
    copied = tmp_path / "modelyard" / "environments" / "Pulumi.staging.yaml"
    assert copied.read_text() == (environments / "Pulumi.staging.yaml").read_text()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "modelyard" / "ml").stat().st_mode) == 0o755
    scripts = [p for p in (tmp_path / "modelyard").rglob("*.sh")]
    assert scripts and all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in scripts)  # still run
    assert (tmp_path / "Dockerfile").read_text().startswith("FROM modelyard-train-churn:base\n")


def test_on_a_uri_the_pods_fetch_the_data_themselves_and_a_refusal_fails_the_job() -> None:
    uri = "runs:/0123456789abcdef/data/churn.parquet"
    job = training_job_manifest(uri=uri)
    pod = job["spec"]["template"]["spec"]
    (data,) = pod["initContainers"]
    (train,) = pod["containers"]
    assert data["args"] == ["data", "fetch", "staging", "--data", uri]
    assert train["args"][train["args"].index("--data") + 1] == uri
    # The fetch reads MLflow with the pod's credentials, from the Secret, and writes the volume.
    assert {m["name"] for m in data["volumeMounts"]} >= {"state", "mlflow"}
    env = {e["name"]: e.get("value") for e in data["env"]}
    assert env[variables.PIPELINE_RUN_ID] == "jenkins-churn-main-42"  # one copy per run
    assert env[variables.STATE_DIR] == training_job.STATE_MOUNT
    failing = {r["onExitCodes"]["containerName"] for r in job["spec"]["podFailurePolicy"]["rules"]
               if r["action"] == "FailJob"}  # fmt: skip
    assert failing == {"data", "train"}  # a URI that cannot be read is not retried
