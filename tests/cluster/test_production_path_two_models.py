"""A second model on the production path (`modelyard:models`): `pipeline run --model segment`
takes the multiclass sample model from data to its own Deployment and Service in staging and
production, beside churn's, which keeps its pods; taking it out of the files and `infra up` removes
its objects. Runs after tests/cluster/test_production_path.py, on the same project."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest
from modelyard.contracts.labels import MODEL_LABEL, serving_selector
from modelyard.ml.data.sample import generate_segment
from modelyard.pipelines.deploy_targets import reachable
from modelyard.pipelines.local_mlflow import free_port

from tests.cluster.project import SERVED, Project
from tests.helpers import DELETE, edit_environment

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]


def _objects(project: Project, env: str, kind: str, model: str) -> list[dict[str, Any]]:
    found = json.loads(project.cluster.kubectl(
        "get", kind, "-n", project.namespace(env), "-l", f"{MODEL_LABEL}={model}", "-o", "json"
    ))["items"]  # fmt: skip
    return list(found)


def _pods(project: Project, env: str, model: str) -> set[str]:
    return {
        pod["metadata"]["uid"]
        for pod in json.loads(project.cluster.kubectl(
            "get", "pods", "-n", project.namespace(env), "-l", serving_selector(model), "-o", "json"
        ))["items"]
        if "deletionTimestamp" not in pod["metadata"]
    }  # fmt: skip


def test_a_second_model_reaches_production_on_its_own_deployment_and_service(
    project: Project, pipeline_run: subprocess.CompletedProcess[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert pipeline_run.returncode == 0
    monkeypatch.setenv("KUBECONFIG", project.variables()["KUBECONFIG"])
    edit_environment(project.environments, project.platform, {
        "training.gate": {"binary": "roc_auc >= 0.6", "multiclass": "macro_f1 >= 0.5"}})  # fmt: skip
    for env in SERVED:  # the environments' gates are churn's: segment brings its own
        edit_environment(project.environments, env, {"models": {"segment": {
            "localPort": free_port(), "promotion": {"gates": ["macro_f1 >= 0.5"]}}}})  # fmt: skip
    for env in SERVED:  # what an earlier test changed has rolled out: churn's pods are settled
        project.cluster.kubectl("rollout", "status", "deployment", "-n", project.namespace(env),
                                "--timeout=300s")  # fmt: skip
    churn_pods = {env: _pods(project, env, "churn") for env in SERVED}
    data = project.folder / "segment.csv"
    frame = generate_segment(4000, seed=5)
    frame.to_csv(data, index=False)
    try:
        done = project.cli("pipeline", "run", project.platform, "--data", str(data),
                           "--model", "segment", "--json")  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        run = json.loads(done.stdout)
        assert run["promoted"] == {"staging": True, "production": True}
        rows = frame.drop(columns=["segment"]).head(5)
        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))}).encode()
        for env in SERVED:
            (deployment,) = _objects(project, env, "deployments", "segment")
            assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert f"{project.repository}:segment-v{run['version']}@sha256:" in container["image"]
            (service,) = _objects(project, env, "services", "segment")
            assert run["serving"][env] == (
                f"k8s-service://{project.namespace(env)}/{service['metadata']['name']}"
            )
            with reachable(run["serving"][env]) as url:
                identity = json.loads(urllib.request.urlopen(f"{url}/version", timeout=10).read())
                request = urllib.request.Request(f"{url}/invocations", data=body, headers={
                    "Content-Type": "application/json", **project.bearer(env)})  # fmt: skip
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            assert identity["model_name"] == "segment"
            assert str(identity["model_version"]) == str(run["version"])
            assert set(answer["classes"]) == set(frame["segment"]) and len(answer["labels"]) == 5
            # Promoting segment left churn's pods running as they were.
            assert _pods(project, env, "churn") == churn_pods[env]
    finally:
        for env in SERVED:
            edit_environment(project.environments, env, {"models": DELETE})
            project.ok("infra", "up", env)
    for env in SERVED:  # out of the file, out of the cluster; churn untouched
        assert _objects(project, env, "deployments", "segment") == []
        assert _objects(project, env, "services", "segment") == []
        assert _pods(project, env, "churn") == churn_pods[env]
