"""Debian's Prometheus scraping the serving pods of the local cluster and node-exporter, with the
shipped alert rules loaded. Debian's build has no Kubernetes discovery, so each running pod is a
static target reached the way kubectl reaches it: the API server's pod proxy on 127.0.0.1, with
the admin kubeconfig's client certificate."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.labels import SERVING_SELECTOR
from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.deploy_targets import reachable
from modelyard.pipelines.local_mlflow import free_port

from tests.cluster.project import Project
from tests.monitoring.prometheus_stack import get_json, poll, prometheus, running

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster,
              pytest.mark.prometheus]  # fmt: skip
ALERTS = Path(__file__).resolve().parents[2] / "monitoring/prometheus/alerts.yml"


def _client_files(kubeconfig: Path, folder: Path) -> dict[str, str]:
    """The kubeconfig's CA and client certificate as the files Prometheus' tls_config reads."""
    config = yaml.safe_load(kubeconfig.read_text())
    user, cluster = config["users"][0]["user"], config["clusters"][0]["cluster"]
    files = {"ca_file": cluster["certificate-authority-data"],
             "cert_file": user["client-certificate-data"], "key_file": user["client-key-data"]}  # fmt: skip
    written = {}
    for key, data in files.items():
        path = folder / key
        path.write_bytes(base64.b64decode(data))
        path.chmod(0o600)
        written[key] = str(path)
    return written


def _pod_labels(namespace: str, pod: str) -> dict[str, str]:
    """The labels the shipped relabelling gives a pod, and the pod proxy as its metrics path."""
    proxy = f"/api/v1/namespaces/{namespace}/pods/{pod}:{SERVING_PORT}/proxy/metrics"
    return {"environment": "production", "model": "churn", "namespace": namespace, "pod": pod,
            "__metrics_path__": proxy}  # fmt: skip


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
    row = json.loads(generate_churn(1, seed=2).drop(columns=["churned"]).to_json(orient="records"))
    with reachable(f"k8s-service://{namespace}/{service['metadata']['name']}") as url:
        body = json.dumps({"dataframe_records": row}).encode()
        for _ in range(20):  # something for the counters to count
            request = urllib.request.Request(f"{url}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            urllib.request.urlopen(request, timeout=10).read()

    kubeconfig = Path(project.variables()["KUBECONFIG"])
    api = urllib.parse.urlsplit(
        yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    )
    node_port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "modelyard-serving",
                "scheme": "https",
                "tls_config": _client_files(kubeconfig, tmp_path),
                "static_configs": [
                    {"targets": [api.netloc], "labels": _pod_labels(namespace, pod)} for pod in pods
                ],
            },
            {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}]},
        ],
    }
    exporter = [prometheus_tools["prometheus-node-exporter"],
                f"--web.listen-address=127.0.0.1:{node_port}"]  # fmt: skip
    with (
        running(exporter, tmp_path / "node-exporter.log", f"http://127.0.0.1:{node_port}/metrics",
                "node-exporter"),
        prometheus(prometheus_tools, config, tmp_path / "prometheus") as url,
    ):  # fmt: skip

        def query(expr: str) -> list[dict[str, Any]]:
            found = get_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
            return list(found["data"]["result"])

        def scraped() -> list[dict[str, Any]] | None:
            results = query("up")
            healthy = all(float(r["value"][1]) == 1 for r in results)
            return results if len(results) == len(pods) + 1 and healthy else None

        up = poll(scraped, 60, "every pod and node-exporter scraped")
        assert {r["metric"]["job"] for r in up} == {"modelyard-serving", "node"}
        served = poll(lambda: query('sum by (environment) (modelyard_requests_total{status="200"})'),
                      30, "the pods' request counters")  # fmt: skip
        assert served[0]["metric"]["environment"] == "production"
        assert float(served[0]["value"][1]) >= 20
        assert query("node_load1")  # the node's own metrics beside them
        rules = get_json(f"{url}/api/v1/rules")["data"]["groups"]
        assert [g["name"] for g in rules] == ["modelyard-serving"]
        assert all(r["health"] == "ok" for r in rules[0]["rules"])
