"""Debian's Prometheus scraping the serving pods of the local cluster and node-exporter, with the
shipped alert rules loaded. Debian's build has no Kubernetes discovery, so each running pod is a
static target reached the way a person reaches one from this machine, `kubectl port-forward`;
its /metrics asks for the environment's metrics token, which Prometheus sends from a file as the
shipped scrape config does (authorization.credentials_file)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.labels import SERVING_SELECTOR
from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.deploy_targets import forwarded, reachable
from modelyard.pipelines.local_mlflow import free_port

from tests.cluster.project import Project
from tests.monitoring.prometheus_stack import get_json, poll, prometheus, running

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster,
              pytest.mark.prometheus]  # fmt: skip
ALERTS = Path(__file__).resolve().parents[2] / "monitoring/prometheus/alerts.yml"


def _pod_labels(namespace: str, pod: str) -> dict[str, str]:
    """The labels the shipped relabelling gives a pod."""
    return {"environment": "production", "model": "churn", "namespace": namespace, "pod": pod}


def test_prometheus_scrapes_the_serving_pods_and_node_exporter(
    project: Project, pipeline_run: subprocess.CompletedProcess[str],
    prometheus_tools: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert pipeline_run.returncode == 0
    monkeypatch.setenv("KUBECONFIG", project.variables()["KUBECONFIG"])  # for reachable()
    namespace = project.namespace("production")
    # The pods of the current rollout only: a pod on its way out would leave a dead target.
    project.cluster.kubectl("rollout", "status", "deployment", "-n", namespace, "--timeout=180s")
    pods = [p["metadata"]["name"] for p in json.loads(project.cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", SERVING_SELECTOR,
        "--field-selector=status.phase=Running", "-o", "json"))["items"]
        if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
    assert pods
    (service,) = json.loads(project.cluster.kubectl(
        "get", "services", "-n", namespace, "-o", "json"))["items"]  # fmt: skip
    tokens = project.tokens["production"]
    row = json.loads(generate_churn(1, seed=2).drop(columns=["churned"]).to_json(orient="records"))
    with reachable(f"k8s-service://{namespace}/{service['metadata']['name']}") as url:
        body = json.dumps({"dataframe_records": row}).encode()
        for _ in range(20):  # something for the counters to count
            request = urllib.request.Request(f"{url}/invocations", data=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {tokens['apps']}"})  # fmt: skip
            urllib.request.urlopen(request, timeout=10).read()

    token_file = tmp_path / "metrics-token"
    token_file.write_text(tokens["metrics"])
    token_file.chmod(0o400)
    shipped = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    (job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == "modelyard-serving"]
    node_port = free_port()
    with ExitStack() as forwards:
        targets = {
            pod: forwards.enter_context(forwarded(namespace, f"pod/{pod}", SERVING_PORT))
            for pod in pods
        }

        def job_of(name: str, **extra: Any) -> dict[str, Any]:
            return {"job_name": name, "static_configs": [
                {"targets": [url.removeprefix("http://")], "labels": _pod_labels(namespace, pod)}
                for pod, url in targets.items()], **extra}  # fmt: skip

        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                # The shipped job's authorization, its file where this test keeps it.
                job_of(
                    "modelyard-serving",
                    authorization={**job["authorization"], "credentials_file": str(token_file)},
                ),
                # The same pods without the token: refused, so never up.
                job_of("without-token"),
                {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]},
            ],
        }
        exporter = [prometheus_tools["prometheus-node-exporter"],
                    f"--web.listen-address=127.0.0.1:{node_port}"]  # fmt: skip
        with (
            running(exporter, tmp_path / "node-exporter.log",
                    f"http://127.0.0.1:{node_port}/metrics", "node-exporter"),
            prometheus(prometheus_tools, config, tmp_path / "prometheus") as url,
        ):  # fmt: skip

            def query(expr: str) -> list[dict[str, Any]]:
                found = get_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
                return list(found["data"]["result"])

            def scraped() -> dict[str, list[float]] | None:
                jobs: dict[str, list[float]] = {}
                for result in query("up"):
                    jobs.setdefault(result["metric"]["job"], []).append(float(result["value"][1]))
                done = sum(len(v) for v in jobs.values()) == 2 * len(pods) + 1
                return jobs if done and all(jobs.get("modelyard-serving", [0])) else None

            up = poll(scraped, 60, "every pod and node-exporter scraped")
            assert up == {"modelyard-serving": [1.0] * len(pods), "node": [1.0],
                          "without-token": [0.0] * len(pods)}  # fmt: skip
            served = poll(
                lambda: query('sum by (environment) (modelyard_requests_total{status="200"})'),
                30, "the pods' request counters",
            )  # fmt: skip
            assert served[0]["metric"]["environment"] == "production"
            assert float(served[0]["value"][1]) >= 20
            # The refused scrapes are counted by the pods themselves.
            refused = poll(lambda: query(
                'sum(modelyard_unauthorized_requests_total{route="metrics",reason="missing"})'),
                30, "the refused scrapes counted")  # fmt: skip
            assert float(refused[0]["value"][1]) >= 1
            assert query("node_load1")  # the node's own metrics beside them
            rules = get_json(f"{url}/api/v1/rules")["data"]["groups"]
            assert [g["name"] for g in rules] == ["modelyard-serving"]
            assert all(r["health"] == "ok" for r in rules[0]["rules"])
