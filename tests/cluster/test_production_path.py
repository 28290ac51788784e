"""The production path on one machine, as the pipeline runs it: the platform (registry, MLflow) by
the real engine in Docker, staging and production as namespaces of the local Kubernetes, and
`modelyard pipeline run` from data to production pods: the package stage pushes the serving image,
each deploy stage is a `pulumi up` of its environment's stack, the smoke test goes through the
staging Service. Then what a platform engineer checks by hand, checked here."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.labels import SERVING_SELECTOR
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.cluster_load import LoadPod, start_load
from modelyard.pipelines.deploy_targets import reachable

from tests.cluster.project import SERVED, Project
from tests.helpers import DELETE, edit_environment

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]


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
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={
            "Content-Type": "application/json", **project.bearer("production")})  # fmt: skip
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


def test_the_promotions_are_commits_and_a_stale_clone_cannot_deploy_production(
    project: Project, pipeline_run: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """Another engineer cloned the repository before the pipeline promoted: their `modelyard
    infra up production` and `pulumi up --stack production` are refused, naming the commit to
    pull; after `git pull` the same command changes nothing."""
    from modelyard.infra.automation import OFFLINE, pulumi_command

    assert pipeline_run.returncode == 0
    log = subprocess.run(["git", "--git-dir", str(project.remote), "log", "--format=%H %s",
                          "main"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    commits = [line.split(" ", 1) for line in log.splitlines()]
    [(promoted, _)] = [c for c in commits if c[1].startswith("promote churn in production: ")]
    [record] = json.loads(project.ok("history", "churn", "--env", "production", "--json"))[-1:]
    assert record["commit"] == promoted
    clone = tmp_path / "stale-clone"
    subprocess.run(["git", "clone", "-q", str(project.remote), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", f"{promoted}~1"], cwd=clone, check=True)
    pulumi = pulumi_command().command  # the engine as a person runs it, its plugins beside it
    variables = {**project.variables(), **OFFLINE, "MODELYARD_STATE_DIR": str(tmp_path / "state"),
                 "PATH": f"{Path(pulumi).parent}:{os.environ['PATH']}"}  # fmt: skip

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), cwd=clone, env=variables, capture_output=True,
                              text=True, timeout=900, check=False)  # fmt: skip

    refused = run(str(clone / ".venv/bin/modelyard"), "infra", "up", "production")
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "this checkout is behind" in said, said[-3000:]
    assert promoted[:12] in said and "git pull" in said and record["id"] in said
    # A preview shows the same difference as a warning, and changes nothing.
    previewed = run(str(clone / ".venv/bin/modelyard"), "infra", "preview", "production")
    said = previewed.stdout + previewed.stderr
    assert previewed.returncode == 0 and "this checkout is behind" in said, said[-3000:]
    direct = run(pulumi, "up", "--stack", "production", "--yes", "--non-interactive")
    said = direct.stdout + direct.stderr
    assert direct.returncode != 0 and "this checkout is behind" in said, said[-3000:]
    assert "Traceback" not in said
    subprocess.run(["git", "checkout", "-q", "main"], cwd=clone, check=True)  # `git pull`
    again = json.loads(run(str(clone / ".venv/bin/modelyard"), "infra", "up", "production",
                           "--json").stdout)  # fmt: skip
    assert {k: v for k, v in again["changes"].items() if v and k != "unchanged"} == {}


def test_the_namespaces_hold_their_network_policies_and_the_api_server_refuses_a_root_pod(
    project: Project, pipeline_run: subprocess.CompletedProcess[str]
) -> None:
    """The policy pack is not the only guard: the API server's Pod Security admission refuses the
    serving pod itself once it is changed to run as root, in the namespace the stack made."""
    assert pipeline_run.returncode == 0
    for env in SERVED:
        namespace = project.namespace(env)
        policies = json.loads(project.cluster.kubectl(
            "get", "networkpolicies", "-n", namespace, "-o", "json"))["items"]  # fmt: skip
        assert {p["metadata"]["name"] for p in policies} >= {
            "default-deny-all",
            "allow-serving-ingress",
            "allow-dns-egress",
            "allow-model-egress",
        }
        template = _deployment(project, env)["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "as-root", "namespace": namespace},
               "spec": template["spec"]}  # fmt: skip
        pod["spec"]["securityContext"] = {**pod["spec"]["securityContext"], "runAsUser": 0,
                                          "runAsNonRoot": False}  # fmt: skip
        refused = project.cluster.kubectl("create", "--dry-run=server", "-f", "-",
                                          stdin=json.dumps(pod), check=False)  # fmt: skip
        assert 'violates PodSecurity "restricted:latest"' in refused, refused


def _load(project: Project, env: str) -> LoadPod:
    namespace = project.namespace(env)
    (service,) = json.loads(project.cluster.kubectl(
        "get", "services", "-n", namespace, "-o", "json"))["items"]  # fmt: skip
    image = _deployment(project, env)["spec"]["template"]["spec"]["containers"][0]["image"]
    rows = json.loads(
        generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
    )
    return start_load(namespace, service["metadata"]["name"], image, rows)


def test_a_new_version_reaches_production_under_load_through_a_runner_restart_and_a_killed_pod(
    project: Project, pipeline_run: subprocess.CompletedProcess[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A second run on new data: callers inside the cluster send to both Services throughout. The
    runner stops after deploy-staging (`--until`) and a new process continues the run; between the
    two, the staging pod is killed: it is replaced and the smoke test still passes. Production
    takes the version through its canary steps. No caller sees a failed request."""
    assert pipeline_run.returncode == 0
    monkeypatch.setenv("KUBECONFIG", project.variables()["KUBECONFIG"])  # the Services' cluster
    # Quick canary steps for a test; a new model on new data need not beat the champion here.
    for env in SERVED:
        edit_environment(project.environments, env, {"promotion.champion": DELETE})
    edit_environment(project.environments, "production", {
        "promotion.rollout.maxLatencyP99Ms": 2000,
        "monitoring.canaryStepSeconds": 4, "monitoring.canaryMinRequests": 20,
    })  # fmt: skip
    before = {env: _served(project, env) for env in SERVED}
    data = project.folder / "churn-2.csv"
    generate_churn(4000, seed=8).to_csv(data, index=False)
    loads = {env: _load(project, env) for env in SERVED}
    try:
        first = project.cli("pipeline", "run", project.platform, "--data", str(data),
                            "--until", "deploy-staging", "--json")  # fmt: skip
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
        run = json.loads(first.stdout)
        assert _served(project, "staging") == str(run["version"]) != before["staging"]
        assert _served(project, "production") == before["production"]
        staging = loads["staging"].stop()

        namespace = project.namespace("staging")
        pods = json.loads(project.cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", SERVING_SELECTOR, "-o", "json"))["items"]  # fmt: skip
        # The rollout's old pod may still be draining; kill the one serving the new version.
        (pod,) = [p["metadata"]["name"] for p in pods if "deletionTimestamp" not in p["metadata"]]
        project.cluster.kubectl("delete", "pod", "-n", namespace, pod, "--wait=false")

        rest = project.cli("pipeline", "run", project.platform, "--data", str(data),
                           "--run-id", run["run_id"])  # fmt: skip
        said = rest.stdout + rest.stderr
        assert rest.returncode == 0, said[-6000:]
        assert "checkout" not in said and "passed smoke-test" in said
        production = loads["production"].stop()
    finally:
        for load in loads.values():
            load.stop()
    assert staging["failed"] == 0 and staging["sent"] > 0, staging
    assert production["failed"] == 0 and production["sent"] > 0, production
    # The callers saw both versions in production: the canary's share, then all of it.
    assert set(production["versions"]) == {before["production"], str(run["version"])}, production
    assert _served(project, "production") == str(run["version"])
    replaced = json.loads(project.cluster.kubectl("get", "pods", "-n", namespace, "-o", "json"))
    assert pod not in {p["metadata"]["name"] for p in replaced["items"]}


def _served(project: Project, env: str) -> str:
    namespace = project.namespace(env)
    (service,) = json.loads(project.cluster.kubectl(
        "get", "services", "-n", namespace, "-o", "json"))["items"]  # fmt: skip
    with reachable(f"k8s-service://{namespace}/{service['metadata']['name']}") as url:
        answered = json.loads(urllib.request.urlopen(f"{url}/version", timeout=10).read())
    return str(answered["model_version"])
