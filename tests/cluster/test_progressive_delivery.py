"""Progressive delivery on the local Kubernetes, under load from inside the cluster, as a platform
engineer drives it: `modelyard promote` then `modelyard deploy production`. Builds on the
production path's project once its pipeline has put a version into production."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from modelyard.contracts.labels import CANDIDATE_LABEL
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.cluster_load import LoadPod, start_load
from modelyard.pipelines.deploy_targets import reachable

from tests.cluster.project import Project
from tests.helpers import DELETE, edit_environment

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]
ENV = "production"


class Production:
    """Production of the project: its file, alias, pods, and versions registered beside v1."""

    def __init__(self, project: Project) -> None:
        from mlflow import MlflowClient

        self.project = project
        self.namespace = project.namespace(ENV)
        self.client = MlflowClient()  # MLFLOW_TRACKING_URI and credentials: the fixture's

    def settings(self, env: str = ENV) -> dict[str, Any]:
        text = (self.project.environments / f"Pulumi.{env}.yaml").read_text()
        return dict(yaml.safe_load(text)["config"]["modelyard:serving"])

    def alias(self) -> int:
        return int(self.client.get_model_version_by_alias("churn", ENV).version)

    def copy_of_serving(self) -> int:
        """A new registration of what production serves: a healthy candidate."""
        served = self.client.get_model_version_by_alias("churn", ENV)
        logged = served.source.removeprefix("models:/")  # MLflow 3: the logged model's id
        return int(self.client.create_model_version(
            "churn", served.source, run_id=served.run_id, tags=served.tags, model_id=logged,
        ).version)  # fmt: skip

    def broken(self) -> int:
        """A version that needs a column no caller sends: it fails every request it gets."""
        import lightgbm as lgb
        import mlflow
        from mlflow.models import infer_signature

        served = self.client.get_model_version_by_alias("churn", ENV)
        frame = generate_churn(600, seed=5)
        features = frame.drop(columns=["churned"]).select_dtypes("number")
        features["loyalty_points"] = range(len(features))
        booster = lgb.train(
            {"objective": "binary", "verbose": -1}, lgb.Dataset(features, frame["churned"]), 5
        )
        run = self.client.create_run(self.client.get_run(served.run_id).info.experiment_id)
        self.client.log_metric(run.info.run_id, "roc_auc", 0.9)
        with mlflow.start_run(run_id=run.info.run_id):  # MLFLOW_TRACKING_URI: the fixture's
            signature = infer_signature(features, booster.predict(features))
            logged = mlflow.lightgbm.log_model(booster, name="model", signature=signature)
        return int(self.client.create_model_version(
            "churn", f"models:/{logged.model_id}", run_id=run.info.run_id, tags=served.tags,
            model_id=logged.model_id,
        ).version)  # fmt: skip

    def deployment(self) -> dict[str, Any]:
        found = json.loads(self.project.cluster.kubectl(
            "get", "deployments", "-n", self.namespace, "-o", "json"))["items"]  # fmt: skip
        (only,) = found
        return dict(only)

    def served_version(self) -> str:
        (service,) = json.loads(self.project.cluster.kubectl(
            "get", "services", "-n", self.namespace, "-o", "json"))["items"]  # fmt: skip
        with reachable(f"k8s-service://{self.namespace}/{service['metadata']['name']}") as url:
            import urllib.request

            return str(
                json.loads(urllib.request.urlopen(f"{url}/version", timeout=10).read())[
                    "model_version"
                ]
            )

    def load(self) -> LoadPod:
        (service,) = json.loads(self.project.cluster.kubectl(
            "get", "services", "-n", self.namespace, "-o", "json"))["items"]  # fmt: skip
        rows = json.loads(
            generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
        )
        return start_load(
            self.namespace, service["metadata"]["name"], self.settings()["image"], rows
        )

    def promote(self, version: int) -> None:
        """Through staging (production takes what staging serves), then into production; the
        images are the ones each environment runs (the server code is not what changes here)."""
        for env in ("staging", ENV):
            image = self.settings(env)["image"]
            self.project.ok("promote", "churn", "--to", env, "--version", str(version),
                            "--image", image)  # fmt: skip

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.project.cli("deploy", ENV)


@pytest.fixture(scope="module")
def production(
    project: Project,
    pipeline_run: subprocess.CompletedProcess[str],
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[Production]:
    assert pipeline_run.returncode == 0, pipeline_run.stdout[-3000:]
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "KUBECONFIG"):
        monkeypatch_module.setenv(key, project.variables()[key])
    tracking = f"http://{project.address}:{project.ports['mlflow']}"
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", tracking)
    # Quick steps for a test, a latency limit a shared 2-core machine keeps; every candidate here
    # is as good as the champion, so the champion rule is left out.
    edit_environment(project.environments, ENV, {
        "promotion.champion": DELETE, "promotion.rollout.maxLatencyP99Ms": 2000,
        "monitoring.canaryStepSeconds": 4, "monitoring.canaryMinRequests": 20,
    })  # fmt: skip
    edit_environment(project.environments, "staging", {"promotion.champion": DELETE})
    yield Production(project)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_canary_that_errors_is_rolled_back_at_its_first_step_and_stays_rolled_back(
    production: Production,
) -> None:
    stable, broken = production.alias(), production.broken()
    load = production.load()
    try:
        production.promote(broken)
        assert production.settings()["canaryWeight"] == 10
        deployed = production.deploy()
        counted = load.summary()
    finally:
        load.stop()
    said = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0, said[-3000:]
    assert f"canary v{broken} failed its analysis: error rate" in said and "at 10%" in said, said[
        -3000:
    ]
    assert "next 50%" not in said  # rolled back at its first step
    # Callers never saw it: what the candidate failed, the stable version answered.
    assert counted["failed"] == 0, counted["failures"]
    assert counted["versions"].get(str(broken), 0) == 0 and counted["versions"][str(stable)] > 0

    # Durable: the alias, the file, the history (with the figures) and the cluster went back.
    assert production.alias() == stable
    settings = production.settings()
    assert settings["desiredVersion"] == stable and "stableVersion" not in settings
    last = json.loads(production.project.ok("history", "churn", "--env", ENV, "--json"))[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == (
        "rollback",
        broken,
        stable,
    )
    assert "error rate" in last["reason"] and "requests" in last["reason"]
    # ... and the repository: the automatic rollback is the remote's newest commit.
    assert _remote_subjects(production)[0] == f"rollback churn in {ENV}: v{broken} -> v{stable}"
    assert last["commit"] == _remote_log(production)[0].split()[0]
    variables = {e["name"]: e["value"] for e in
                 production.deployment()["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert variables["MODELYARD_MODEL_URI"].endswith(f"/{stable}")
    assert "MODELYARD_CANDIDATE_URI" not in variables
    # The runner again, and the pods restarted: still the stable version, nothing to change.
    again = production.deploy()
    assert again.returncode == 0 and "no changes" in again.stdout, again.stdout[-2000:]
    production.project.cluster.kubectl(
        "rollout", "restart", "deployment", "-n", production.namespace
    )
    production.project.cluster.kubectl("rollout", "status", "deployment", "-n", production.namespace,
                                       "--timeout=180s")  # fmt: skip
    assert production.served_version() == str(stable)


class PodWatch(threading.Thread):
    """Every second: the canary's weight (its ConfigMap) and the two-version pods serving,
    each with its start time and restart count."""

    def __init__(self, production: Production) -> None:
        super().__init__(daemon=True)
        self.production = production
        self.seen: list[tuple[str | None, frozenset[tuple[str, str, int]]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        kubectl = self.production.project.cluster.kubectl
        namespace = self.production.namespace
        while not self.done.wait(1.0):
            listed = json.loads(kubectl("get", "pods,configmaps", "-n", namespace, "-o", "json"))
            weight, pods = None, set()
            for item in listed["items"]:
                if item["kind"] == "ConfigMap" and "candidateWeight" in item.get("data", {}):
                    weight = item["data"]["candidateWeight"]
                labels = item["metadata"].get("labels", {})
                if (item["kind"] == "Pod" and CANDIDATE_LABEL in labels
                        and not item["metadata"].get("deletionTimestamp")
                        and item["status"].get("phase") == "Running"):  # fmt: skip
                    restarts = sum(c["restartCount"] for c in item["status"]["containerStatuses"])
                    pods.add((item["metadata"]["name"], item["status"]["startTime"], restarts))
            self.seen.append((weight, frozenset(pods)))

    def pods_at(self, weight: str) -> set[frozenset[tuple[str, str, int]]]:
        return {pods for at, pods in self.seen if at == weight}


def test_a_healthy_canary_climbs_every_step_with_no_failed_request(production: Production) -> None:
    healthy = production.copy_of_serving()
    load = production.load()
    watch = PodWatch(production)
    watch.start()
    try:
        production.promote(healthy)
        deployed = production.deploy()
        counted = load.summary()
    finally:
        watch.done.set()
        watch.join()
        load.stop()
    said = deployed.stdout + deployed.stderr
    assert deployed.returncode == 0, said[-3000:]
    assert "step passed at 10%" in said and "step passed at 50%" in said
    assert f"canary v{healthy} passed every step" in said
    assert counted["failed"] == 0, counted["failures"]
    # From the end of 10% to 100% the same pods served, none restarted: a step changed the
    # weight in their ConfigMap, not the pods.
    # (The end replaces them one by one while the ConfigMap still says 100: a subset then.)
    at_10 = [pods for at, pods in watch.seen if at == "10" and pods]
    later = set().union(*watch.pods_at("50"), *watch.pods_at("100"))
    assert at_10 and at_10[-1] in watch.pods_at("50") and later <= at_10[-1], watch.seen
    assert all(restarts == 0 for _, _, restarts in at_10[-1])
    assert counted["versions"].get(str(healthy), 0) > 0
    settings = production.settings()
    assert settings["desiredVersion"] == healthy and "stableVersion" not in settings
    assert "canaryWeight" not in settings and production.alias() == healthy
    assert production.served_version() == str(healthy)
    # Each step is a commit on the remote, after the promotion's (newest first).
    # 10 -> 50, 50 -> 100, and the end (the stable version dropped).
    steps, promotion = _remote_subjects(production)[:3], _remote_subjects(production)[3]
    assert all(s.startswith(f"canary-step churn in {ENV}: v{healthy} -> v{healthy}") for s in steps)
    assert promotion.startswith(f"promote churn in {ENV}: ") and promotion.endswith(f"v{healthy}")


def _remote_log(production: Production) -> list[str]:
    """`git log --format='%H %s'` of main on the project's remote, newest first."""
    return subprocess.run(
        ["git", "--git-dir", str(production.project.remote), "log", "--format=%H %s", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip


def _remote_subjects(production: Production) -> list[str]:
    return [line.split(" ", 1)[1] for line in _remote_log(production)]


def _answers_from(load: LoadPod, version: int, timeout: float = 60) -> int:
    """Wait until the callers get answers from `version` again (connections move to the pods
    the Service selects as they reconnect: the servers ask every 10 s); how many so far."""
    before = load.summary()["versions"].get(str(version), 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = int(load.summary()["versions"].get(str(version), 0))
        if now > before + 20:
            return now
        time.sleep(1)
    raise AssertionError(f"the callers got no answers from v{version} in {timeout:.0f} s")


def test_blue_green_switches_and_rolls_back_with_no_failed_request(production: Production) -> None:
    edit_environment(
        production.project.environments, ENV, {"promotion.rollout.strategy": "blue-green"}
    )
    assert production.deploy().returncode == 0  # the current version, now as the blue Deployment
    before, after = production.alias(), production.copy_of_serving()
    load = production.load()
    try:
        production.promote(after)
        switched = production.deploy()
        assert switched.returncode == 0, switched.stdout[-3000:]
        # The outgoing version stays warm beside the new one; the Service points at the new one.
        deployments = {d["metadata"]["name"]: d for d in json.loads(production.project.cluster.kubectl(
            "get", "deployments", "-n", production.namespace, "-o", "json"))["items"]}  # fmt: skip
        assert {f"production-serving-v{before}", f"production-serving-v{after}"} <= set(deployments)
        assert deployments[f"production-serving-v{before}"]["status"].get("readyReplicas") == 2
        assert production.settings()["stableVersion"] == before
        assert production.served_version() == str(after)
        _answers_from(load, after)
        production.project.ok("rollback", "churn", "--env", ENV, "--reason", "blue/green drill")
        rolled = production.deploy()
        assert rolled.returncode == 0, rolled.stdout[-3000:]
        _answers_from(load, before)
        counted = load.summary()
    finally:
        load.stop()
    assert production.served_version() == str(before)
    assert counted["failed"] == 0, counted["failures"]


def _score(url: str, row: dict[str, Any], auth: dict[str, str], key: str | None = None) -> str:
    """One request through the Service (`auth`: the bearer header); the version that answered."""
    import urllib.request

    headers = {"Content-Type": "application/json", **auth,
               **({"X-Request-Key": key} if key else {})}  # fmt: skip
    body = json.dumps({"dataframe_records": [row]}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers)
    return str(json.loads(urllib.request.urlopen(request, timeout=10).read())["model_version"])


def test_ab_is_sticky_per_key_and_shadow_answers_with_the_stable_version(
    production: Production,
) -> None:
    from modelyard.ml.serving.metrics import parse_version_stats
    from modelyard.pipelines.progressive import serving_pod_metrics

    edit_environment(production.project.environments, ENV, {"promotion.rollout.strategy": "ab",
                                                            "promotion.rollout.abSplit": 50})  # fmt: skip
    assert production.deploy().returncode == 0  # the current version alone, as one Deployment
    stable, candidate = production.alias(), production.copy_of_serving()
    production.promote(candidate)
    assert production.deploy().returncode == 0
    row = json.loads(generate_churn(1, seed=4).drop(columns=["churned"]).to_json(orient="records"))[
        0
    ]
    (service,) = json.loads(production.project.cluster.kubectl(
        "get", "services", "-n", production.namespace, "-o", "json"))["items"]  # fmt: skip
    address = f"k8s-service://{production.namespace}/{service['metadata']['name']}"
    auth = production.project.bearer(ENV)
    with reachable(address) as url:
        # A/B: each caller's key always gets the same version, and the keys split between both.
        assignment = {f"customer-{i}": _score(url, row, auth, f"customer-{i}") for i in range(40)}
        assert all(_score(url, row, auth, key) == version for key, version in assignment.items())
        assert set(assignment.values()) == {str(stable), str(candidate)}

    # Shadow, same two versions: every answer from the stable one; the candidate scores a copy.
    edit_environment(production.project.environments, ENV, {"promotion.rollout.strategy": "shadow"})
    assert production.deploy().returncode == 0
    with reachable(address) as url:
        answered = {_score(url, row, auth) for _ in range(40)}
    assert answered == {str(stable)}
    counted = parse_version_stats(*serving_pod_metrics(production.namespace).values())
    assert sum(counted[str(candidate)]["status"].values()) >= 40  # shadowed, never returned
