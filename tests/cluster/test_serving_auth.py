"""Bearer tokens on production's pods, as a platform engineer runs them: refused without one,
let in with either of two, and a token rotated with `pulumi config set --secret` + `infra up`
under load from inside the cluster: no failed request, no pod restarted, no token in any log,
spec or stack state."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from modelyard.contracts.labels import SERVING_SELECTOR
from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.cluster_load import LoadPod, start_load
from modelyard.pipelines.deploy_targets import forwarded, reachable

from tests.cluster.project import Project

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]
ENV = "production"
ROWS = json.loads(generate_churn(20, seed=4).drop(columns=["churned"]).to_json(orient="records"))


def _score(url: str, token: str | None) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"dataframe_records": ROWS[:1]}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _pods(project: Project) -> dict[str, tuple[str, int]]:
    """Each serving pod's start time and restart count, by name."""
    listed = json.loads(project.cluster.kubectl(
        "get", "pods", "-n", project.namespace(ENV), "-l", SERVING_SELECTOR, "-o", "json"))  # fmt: skip
    return {
        p["metadata"]["name"]: (
            p["status"]["startTime"],
            sum(c["restartCount"] for c in p["status"]["containerStatuses"]),
        )
        for p in listed["items"]
        if not p["metadata"].get("deletionTimestamp")
    }


def _until(url: str, token: str, status: int, what: str, timeout: float = 120) -> float:
    """Seconds until `token` is answered `status` (the kubelet swaps the Secret's files, every
    worker re-reads them)."""
    started = time.monotonic()
    while _score(url, token)[0] != status:
        assert time.monotonic() - started < timeout, f"{what} within {timeout:.0f} s"
        time.sleep(1)
    return time.monotonic() - started


def _until_every_pod(project: Project, token: str, status: int, what: str) -> float:
    """Seconds until every serving pod answers `token` with `status`: each pod's kubelet swaps
    the Secret's files on its own schedule, so one answer through the Service says little."""
    started = time.monotonic()
    for pod in _pods(project):
        with forwarded(project.namespace(ENV), f"pod/{pod}", SERVING_PORT) as url:
            _until(url, token, status, f"{what} by {pod}")
    return time.monotonic() - started


def _load(project: Project, image: str, token: str) -> LoadPod:
    return start_load(project.namespace(ENV), f"{ENV}-serving", image, ROWS, token=token)


def test_production_asks_for_a_token_and_one_rotates_under_load_without_a_restart(
    project: Project, pipeline_run: subprocess.CompletedProcess[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert pipeline_run.returncode == 0
    monkeypatch.setenv("KUBECONFIG", project.variables()["KUBECONFIG"])
    namespace, tokens = project.namespace(ENV), project.tokens[ENV]
    project.cluster.kubectl("rollout", "status", "deployment", "-n", namespace, "--timeout=180s")
    deployment: dict[str, Any] = json.loads(project.cluster.kubectl(
        "get", "deployments", "-n", namespace, "-o", "json"))["items"][0]  # fmt: skip
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    rotated = secrets.token_urlsafe(24)
    with reachable(f"k8s-service://{namespace}/{ENV}-serving") as url:
        status, headers = _score(url, None)
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="modelyard"'
        assert _score(url, "not-a-token")[0] == 401
        assert _score(url, tokens["metrics"])[0] == 401  # Prometheus's token does not score
        assert _score(url, tokens["pipeline"])[0] == 200
        assert _score(url, tokens["apps"])[0] == 200

        # The callers use `apps`; a new token is added, they move to it, `apps` is removed.
        before = _pods(project)
        old_callers = _load(project, image, "apps")
        new_callers = None
        try:
            project.set_secret(ENV, "serving.auth.tokens.next", rotated)
            project.ok("infra", "up", ENV)
            added = _until_every_pod(project, rotated, 200, "the new token accepted")
            new_callers = _load(project, image, "next")
            moved = old_callers.stop()
            project.remove_config(ENV, "serving.auth.tokens.apps")
            project.ok("infra", "up", ENV)
            removed = _until_every_pod(project, tokens["apps"], 401, "the removed token refused")
            time.sleep(3)
            after = new_callers.stop()
        finally:
            old_callers.stop()
            if new_callers is not None:
                new_callers.stop()
        assert _score(url, tokens["pipeline"])[0] == 200
    print(f"token rotation: added in {added:.0f} s, removed in {removed:.0f} s")  # --durations
    assert moved["failed"] == 0 and moved["sent"] > 0, moved["failures"]
    assert after["failed"] == 0 and after["sent"] > 0, after["failures"]
    assert _pods(project) == before  # no pod restarted or replaced

    # The tokens are in no log, no pod spec, and not in the stack's state in plain text.
    every = [tokens["pipeline"], tokens["apps"], tokens["metrics"], rotated]
    logs = "".join(
        project.cluster.kubectl("logs", "-n", namespace, pod, "--all-containers")
        for pod in _pods(project)
    )
    assert "tokens read from" in logs and "next" in logs  # names are logged
    specs = project.cluster.kubectl("get", "deployments,pods", "-n", namespace, "-o", "json")
    state = subprocess.run(
        [project.pulumi(), "stack", "export", "--stack", ENV], cwd=project.folder,
        env=project.variables(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    environment_file = (project.environments / f"Pulumi.{ENV}.yaml").read_text()
    for token in every:
        for where, text in (("logs", logs), ("specs", specs), ("state", state),
                            ("environment file", environment_file)):  # fmt: skip
            assert token not in text, where
