"""monitoring/: the alert rules, the scrape config and the Grafana dashboard, checked by Debian's
promtool and exercised by a real Prometheus scraping a real model server and node-exporter."""

from __future__ import annotations

import copy
import json
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.variables import AUTH_METRICS_FILE, AUTH_SCORING_PREFIX
from modelyard.ml.monitoring.exposition import write_drift_textfile
from modelyard.ml.serving.rollout import Limits
from modelyard.pipelines.local_mlflow import free_port

from tests.monitoring.prometheus_stack import get_json, poll, prometheus, running
from tests.serving.helpers import Server, call, records, save_local, start_server, train_booster

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "monitoring/prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = REPO / "monitoring/grafana/modelyard-serving.json"


def promtool(
    prometheus_tools: dict[str, str], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tools["promtool"], *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def alert_names(rules: dict[str, Any]) -> set[str]:
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


# -- promtool on the shipped files ---------------------------------------------------------------


def test_the_alert_rules_pass_promtool_and_their_unit_tests(
    prometheus_tools: dict[str, str],
) -> None:
    checked = promtool(prometheus_tools, "check", "rules", ALERTS.name, cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(ALERTS.read_text())
    assert [group["name"] for group in rules["groups"]] == ["modelyard-serving"]
    assert f"SUCCESS: {len(alert_names(rules))} rules found" in checked.stdout
    tested = promtool(prometheus_tools, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not."""
    rules = yaml.safe_load(ALERTS.read_text())
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    cases = [case for group in tests["tests"] for case in group["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == alert_names(rules)
    assert quiet == alert_names(rules)
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
            for annotation in ("summary", "description"):
                assert "$labels.environment" in rule["annotations"][annotation], rule["alert"]


def test_the_unit_tests_catch_an_alert_that_counts_client_errors(
    prometheus_tools: dict[str, str], tmp_path: Path
) -> None:
    """The unit tests can fail: a rule blaming the server for 400s breaks them."""
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path)
    text = ALERTS.read_text()
    assert 'status=~"5..|422"' in text
    (tmp_path / "alerts.yml").write_text(text.replace('status=~"5..|422"', 'status=~"[45]..|422"'))
    tested = promtool(prometheus_tools, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "ModelyardHighErrorRate" in tested.stdout + tested.stderr
    assert 'model_version="7"' in tested.stdout + tested.stderr  # the 400s' version


# -- the scrape config ---------------------------------------------------------------------------

# Pods as Kubernetes' pod discovery would describe them (its __meta_ labels), to run the shipped
# relabelling on: Debian builds Prometheus without Kubernetes discovery (see below).
PODS: dict[str, dict[str, str]] = {
    "with-environment-label": {
        "__meta_kubernetes_namespace": "prod-eu",
        "__meta_kubernetes_pod_name": "serving-blue-7d9f",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "modelyard-serving",
        "__meta_kubernetes_pod_label_modelyard_io_environment": "production",
        "__meta_kubernetes_pod_label_modelyard_io_model": "churn",
        "__meta_kubernetes_pod_label_modelyard_io_track": "blue",
        "__meta_kubernetes_pod_container_port_number": "8080",
        "__meta_kubernetes_pod_phase": "Running",
    },
    "namespace-only": {
        "__meta_kubernetes_namespace": "staging",
        "__meta_kubernetes_pod_name": "serving-stable-5c2a",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "modelyard-serving",
        "__meta_kubernetes_pod_container_port_number": "8080",
        "__meta_kubernetes_pod_phase": "Running",
    },
    "another-port-of-a-serving-pod": {
        "__meta_kubernetes_namespace": "staging",
        "__meta_kubernetes_pod_name": "serving-stable-5c2a",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "modelyard-serving",
        "__meta_kubernetes_pod_container_port_number": "9901",
        "__meta_kubernetes_pod_phase": "Running",
    },
    "another-app": {
        "__meta_kubernetes_namespace": "staging",
        "__meta_kubernetes_pod_name": "mlflow-0",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "mlflow",
        "__meta_kubernetes_pod_container_port_number": "8080",
        "__meta_kubernetes_pod_phase": "Running",
    },
    "finished": {
        "__meta_kubernetes_namespace": "staging",
        "__meta_kubernetes_pod_name": "serving-old-1b1b",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "modelyard-serving",
        "__meta_kubernetes_pod_container_port_number": "8080",
        "__meta_kubernetes_pod_phase": "Failed",
    },
}


def shipped_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return config


def with_static_pods(config: dict[str, Any], rule_dir: Path) -> dict[str, Any]:
    """The shipped config with the pod discovery replaced by static targets carrying the pods'
    discovery labels; everything else (relabelling, node job, rules) as shipped."""
    config = copy.deepcopy(config)
    config["rule_files"] = [str(rule_dir / name) for name in config["rule_files"]]
    serving = next(j for j in config["scrape_configs"] if j["job_name"] == "modelyard-serving")
    del serving["kubernetes_sd_configs"]
    serving["static_configs"] = [
        {"targets": [f"127.0.0.1:{free_port()}"], "labels": labels} for labels in PODS.values()
    ]
    return config


def test_the_scrape_config_finds_serving_pods_and_passes_promtool(
    prometheus_tools: dict[str, str], tmp_path: Path
) -> None:
    config = shipped_config()
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["modelyard-serving"]["kubernetes_sd_configs"] == [{"role": "pod"}]
    # The pods' /metrics asks for the metrics token: Prometheus sends it from a mounted file.
    token_file = jobs["modelyard-serving"]["authorization"]["credentials_file"]
    assert jobs["node"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    # The shipped folder as it is deployed: the token file mounted beside the config.
    deployed = tmp_path / "deployed"
    shutil.copytree(PROMETHEUS_DIR, deployed)
    (deployed / token_file).parent.mkdir(parents=True)
    (deployed / token_file).write_text("a-metrics-token")
    checked = promtool(prometheus_tools, "check", "config", "prometheus.yml", cwd=deployed)
    output = checked.stdout + checked.stderr
    if checked.returncode != 0:
        # Debian's prometheus is built without Kubernetes discovery; its promtool refuses the
        # kubernetes_sd_configs field and nothing else. Check all the rest with it.
        assert "field kubernetes_sd_configs not found" in output, output
        (deployed / "prometheus.yml").write_text(
            yaml.safe_dump(with_static_pods(config, PROMETHEUS_DIR), sort_keys=False)
        )
        checked = promtool(prometheus_tools, "check", "config", "prometheus.yml", cwd=deployed)
        output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    # The rule file was found beside the config and checked too.
    assert f"SUCCESS: {len(alert_names(yaml.safe_load(ALERTS.read_text())))} rules found" in output


def test_the_relabelling_keeps_serving_pods_and_labels_their_environment(
    prometheus_tools: dict[str, str], tmp_path: Path
) -> None:
    """Run by a real Prometheus: one target per serving pod, `environment` from the pod label
    modelyard.io/environment or else the namespace."""
    config = with_static_pods(shipped_config(), PROMETHEUS_DIR)
    with prometheus(prometheus_tools, config, tmp_path) as url:

        def targets() -> dict[str, Any] | None:
            data = get_json(f"{url}/api/v1/targets")["data"]
            active = [t for t in data["activeTargets"] if t["labels"]["job"] == "modelyard-serving"]
            return data if len(active) + len(data["droppedTargets"]) == len(PODS) else None

        data = poll(targets, 30, "every pod to be kept or dropped")
    kept = sorted(
        (t["labels"] for t in data["activeTargets"] if t["labels"]["job"] == "modelyard-serving"),
        key=lambda labels: labels["environment"],
    )
    assert [{k: v for k, v in labels.items() if k != "instance"} for labels in kept] == [
        {
            "job": "modelyard-serving",
            "environment": "production",
            "model": "churn",
            "namespace": "prod-eu",
            "pod": "serving-blue-7d9f",
            "track": "blue",
        },
        {
            "job": "modelyard-serving",
            "environment": "staging",
            "namespace": "staging",
            "pod": "serving-stable-5c2a",
        },
    ]
    dropped = {
        (t["discoveredLabels"]["__meta_kubernetes_pod_name"],
         t["discoveredLabels"]["__meta_kubernetes_pod_container_port_number"])
        for t in data["droppedTargets"]
    }  # fmt: skip
    assert dropped == {
        ("serving-stable-5c2a", "9901"),
        ("mlflow-0", "8080"),
        ("serving-old-1b1b", "8080"),
    }


# -- a real Prometheus scraping a real model server and node-exporter --------------------------


def shortened_rules(text: str) -> str:
    """The shipped rules with their windows and `for:` durations cut to seconds, for a test that
    cannot wait 5 minutes; thresholds and expressions stay as shipped."""
    shorter = re.sub(r"\[\d+m\]", "[10s]", text)
    shorter = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 2s", shorter)
    assert "[5m]" not in shorter and "for: 5m" not in shorter and shorter != text
    return shorter


@dataclass
class Stack:
    prometheus: str
    server: Server
    stable: str
    candidate: str
    load_failures: list[str]


def send_load(
    url: str, rows: list[dict[str, Any]], stop: threading.Event, failures: list[str],
    token: str,
) -> None:  # fmt: skip
    """Single-row requests, about 50 a second, until stopped or for 5 minutes at most."""
    deadline = time.monotonic() + 300
    n = 0
    while not stop.is_set() and time.monotonic() < deadline:
        body = json.dumps({"dataframe_records": [rows[n % len(rows)]]}).encode()
        n += 1
        try:
            status, _, payload = call(url, "POST", "/invocations", body,
                                      {"Content-Type": "application/json",
                                       "Authorization": f"Bearer {token}"})  # fmt: skip
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        else:
            if status != 200:
                failures.append(f"{status} {payload[:200]!r}")
        stop.wait(0.02)


def local_model(folder: Path, version: str, **training: Any) -> tuple[Path, list[dict[str, Any]]]:
    """A packaged model folder (modelyard-model.json names its version, as the package stage
    writes it) and rows a client sends."""
    booster, features = train_booster(**training)
    save_local(booster, features, folder)
    (folder / "modelyard-model.json").write_text(json.dumps({"name": "churn", "version": version}))
    return folder, records(features.iloc[:50])


@pytest.fixture(scope="module")
def stack(
    prometheus_tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A model server whose pinned canary fails every request (it needs a column clients do not
    send yet: the stable version answers them, users see no error), node-exporter reading a drift
    textfile, and Prometheus scraping both every second with the shortened shipped rules."""
    root = tmp_path_factory.mktemp("monitoring-stack")
    stable_dir, rows = local_model(root / "model-1", "1", rounds=30, seed=0)
    candidate_dir, _ = local_model(root / "model-2", "2", rounds=20, seed=2, extra_column=True)
    textfiles = root / "textfiles"
    textfiles.mkdir()
    write_drift_textfile(textfiles / "drift-test.prom", "test", "churn", True,
                         {"tenure_months": 0.42, "age": 0.03}, checked_at=time.time())  # fmt: skip
    rules = root / "alerts.yml"
    rules.write_text(shortened_rules(ALERTS.read_text()))
    # The server asks for tokens: clients send a scoring one, Prometheus the metrics one from the
    # file the shipped scrape config names (here in a folder of the test's).
    tokens, scoring, scraping = (
        root / "tokens",
        secrets.token_urlsafe(16),
        secrets.token_urlsafe(16),
    )
    tokens.mkdir()
    (tokens / (AUTH_SCORING_PREFIX + "clients")).write_text(scoring)
    (tokens / AUTH_METRICS_FILE).write_text(scraping)
    scraper_file = root / "metrics-token"
    scraper_file.write_text(scraping)
    shipped = next(
        j for j in shipped_config()["scrape_configs"] if j["job_name"] == "modelyard-serving"
    )
    authorization = {**shipped["authorization"], "credentials_file": str(scraper_file)}

    server = start_server(
        str(stable_dir), root / "server", workers=1, environment="test", auth_dir=str(tokens),
        candidate_uri=str(candidate_dir), candidate_weight=50, strategy="canary",
        canary_steps=(50, 100),
        # No in-server rollback: the alert is what should notice this canary.
        limits=Limits(max_error_rate=1.0, max_latency_p99_ms=10_000.0, min_requests=10),
    )  # fmt: skip
    stop = threading.Event()
    failures: list[str] = []
    load = threading.Thread(target=send_load, args=(server.url, rows, stop, failures, scoring))
    try:
        server.wait(lambda s: s.get("ready") and s.get("candidate"), what="both versions loaded")
        node_exporter = f"127.0.0.1:{free_port()}"
        command = [
            prometheus_tools["prometheus-node-exporter"],
            f"--web.listen-address={node_exporter}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
        ]
        with running(command, root / "node-exporter.log", f"http://{node_exporter}/metrics",
                     "node-exporter"):  # fmt: skip
            # Outside Kubernetes the environment and the model are static labels on the target.
            serving = {
                "targets": [server.url.removeprefix("http://")],
                "labels": {"environment": "test", "model": "churn"},
            }
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": "modelyard-serving", "static_configs": [serving],
                     "authorization": authorization},
                    {"job_name": "node", "static_configs": [{"targets": [node_exporter]}]},
                ],
            }  # fmt: skip
            with prometheus(prometheus_tools, config, root / "prometheus") as url:
                load.start()
                yield Stack(url, server, "1", "2", failures)
    finally:
        stop.set()
        if load.is_alive():
            load.join(timeout=30)
        server.stop()


def alerts(url: str, name: str) -> list[dict[str, Any]]:
    return [a for a in get_json(f"{url}/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == name]  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_a_failing_canary_fires_the_error_rate_alert_for_its_version_only(stack: Stack) -> None:
    def firing() -> list[dict[str, Any]]:
        return [a for a in alerts(stack.prometheus, "ModelyardHighErrorRate")
                if a["state"] == "firing"]  # fmt: skip

    fired = poll(firing, 90, "ModelyardHighErrorRate to fire")
    assert [a["labels"] for a in fired] == [
        {
            "alertname": "ModelyardHighErrorRate",
            "environment": "test",
            "model": "churn",
            "model_version": stack.candidate,
            "severity": "page",
        }
    ]
    summary = fired[0]["annotations"]["summary"]
    assert summary == f"test: churn version {stack.candidate} fails 100% of its requests"
    # The stable version answered every request the canary failed: no alert, no user error.
    assert not [a for a in alerts(stack.prometheus, "ModelyardHighErrorRate")
                if a["labels"]["model_version"] == stack.stable]  # fmt: skip
    assert stack.load_failures == []
    assert alerts(stack.prometheus, "ModelyardServerDown") == []


@pytest.mark.slow
@pytest.mark.integration
def test_a_drift_textfile_served_by_node_exporter_fires_the_drift_alert(stack: Stack) -> None:
    def firing() -> list[dict[str, Any]]:
        return [a for a in alerts(stack.prometheus, "ModelyardDrift") if a["state"] == "firing"]

    fired = poll(firing, 90, "ModelyardDrift to fire")
    assert [(a["labels"]["environment"], a["labels"]["model"], a["labels"]["job"]) for a in fired
            ] == [("test", "churn", "node")]  # fmt: skip
    # Checked just now: not stale.
    assert alerts(stack.prometheus, "ModelyardDriftCheckStale") == []


# -- the Grafana dashboard -----------------------------------------------------------------------


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"])
            for panel in dashboard["panels"] for target in panel["targets"]]  # fmt: skip


def test_the_dashboard_is_importable_and_covers_the_server() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    environment = variables["environment"]
    assert environment["datasource"]["uid"] == "${datasource}"
    assert environment["query"]["query"] == "label_values(modelyard_requests_total, environment)"
    # The models of the chosen environment: each served model has its own series.
    assert variables["model"]["query"]["query"] == (
        'label_values(modelyard_requests_total{environment="$environment"}, model)'
    )
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}"
            assert 'environment="$environment",model="$model"' in target["expr"], panel["title"]
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for subject in ("request", "error", "latency", "prediction", "drift", "psi", "restart"):
        assert subject in titles, subject


@pytest.mark.slow
@pytest.mark.integration
def test_every_dashboard_query_runs_and_shows_the_live_server(stack: Stack) -> None:
    """What a user opening the dashboard on environment `test` sees: every panel has data."""
    dashboard = json.loads(DASHBOARD.read_text())

    def query(expr: str) -> dict[str, Any]:
        expr = expr.replace("$environment", "test").replace("$model", "churn")
        expr = expr.replace("$__rate_interval", "1m")
        url = f"{stack.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            return dict(get_json(url))
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with the reason
            return dict(json.loads(exc.read()))

    for title, expr in dashboard_targets(dashboard):
        answer = query(expr)
        assert answer["status"] == "success", (title, expr, answer)

    # Rates need two scrapes, and the once-a-second flush brings the prediction counts.
    empty: list[str] = []

    def every_panel_has_data() -> bool:
        empty[:] = [title for title, expr in dashboard_targets(dashboard)
                    if not query(expr)["data"]["result"]]  # fmt: skip
        return not empty

    try:
        poll(every_panel_has_data, 90, "data in every panel")
    except AssertionError:
        raise AssertionError(f"panels without data: {empty}") from None
