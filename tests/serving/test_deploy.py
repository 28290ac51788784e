"""The embedded default end to end: `modelyard deploy` blue/green on 127.0.0.1 and
`modelyard monitor drift` catching drifted traffic, through the real CLI and a real registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from modelyard.ml.serving.client import score_frame
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.processes import is_alive

from tests.serving.conftest import Trained
from tests.serving.helpers import Load, churn_frame, records, register, score

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def modelyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("modelyard")), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def local_env(environments: Path, tracking: str, model_name: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> int:  # fmt: skip
    """environments/ copy serving `model_name` on a free port; state under tmp_path."""
    path = environments / "Pulumi.local.yaml"
    port = free_port()
    text = path.read_text().replace("    model: churn\n", f"    model: {model_name}\n", 1)
    text = text.replace("    localPort: 8180\n", f"    localPort: {port}\n", 1)
    text = text.replace("    sampleRate: 0.5\n", "    sampleRate: 1.0\n", 1)
    path.write_text(text)
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    return port


def test_deploy_blue_green_then_drift_is_caught(
    local_env: int, model_name: str, model_a: Trained, model_b: Trained, tmp_path: Path
) -> None:
    client = mlflow.MlflowClient()
    result = modelyard("deploy", "local")
    assert result.returncode == 2 and "nothing to deploy" in result.stderr  # no alias yet
    v1 = register(*model_a, model_name)
    v2 = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "local", v1)
    try:
        result = modelyard("deploy", "local")
        assert result.returncode == 0, result.stderr
        url = f"http://127.0.0.1:{local_env}"
        assert f"serving version {v1}" in result.stdout and url in result.stdout
        assert "already serving" in modelyard("deploy", "local").stdout

        clean, _ = churn_frame(400, seed=11)
        status, body, _ = score(url, {"dataframe_records": records(clean)})
        assert status == 200 and body["model_version"] == v1

        # Promotion moved the alias: the running server follows it by itself, and a deploy
        # with --replace swaps in a fresh server (blue/green); no request fails either way.
        with (
            Load(url, records(clean), threads=2) as load,
            Load(url, records(clean), threads=1, keep_alive=False) as new_connections,
        ):
            client.set_registered_model_alias(model_name, "local", v2)
            result = modelyard("deploy", "local", "--replace")
        assert result.returncode == 0, result.stderr
        assert f"serving version {v2} (replacing the server of version " in result.stdout
        assert load.failures == [] and load.versions[v2] > 0, (load.failures[:3], load.versions)
        assert new_connections.failures == [], new_connections.failures[:3]

        for seed in (12, 13):  # live traffic like training's: no drift
            status, _, _ = score(
                url, {"dataframe_records": records(churn_frame(300, seed=seed)[0])}
            )
        time.sleep(1.5)  # workers flush their samples once a second
        checked = modelyard("monitor", "drift", "local", "--report", str(tmp_path / "clean.html"))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "no drift" in checked.stdout

        drifted, _ = churn_frame(1500, seed=14, drift=0.9)
        predictions, version = score_frame(url, drifted, batch=100)
        assert len(predictions) == len(drifted) and version == v2
        time.sleep(1.5)
        report = tmp_path / "drift.html"
        checked = modelyard("monitor", "drift", "local", "--report", str(report), "--rows", "1500",
                            "--textfile-dir", str(tmp_path))  # fmt: skip
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert "DRIFT in" in checked.stdout and "contract" in checked.stdout
        assert "<img" in report.read_text()
        # For Prometheus (node-exporter's textfile collector): what ModelyardDrift alerts on.
        exposed = (tmp_path / "modelyard-drift-local.prom").read_text()
        assert (
            f'modelyard_drift_detected{{environment="local",model="{model_name}"}} 1.0' in exposed
        )
    finally:
        stopped = modelyard("deploy", "local", "--stop")
    assert "stopped" in stopped.stdout


def test_a_killed_server_takes_its_workers_along_and_deploy_starts_a_new_one(
    local_env: int, model_name: str, model_a: Trained, tmp_path: Path
) -> None:
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(model_name, "local", register(*model_a, model_name))
    url = f"http://127.0.0.1:{local_env}"
    try:
        assert modelyard("deploy", "local").returncode == 0
        record = json.loads((tmp_path / "state/serving/local/deploy.json").read_text())
        status = json.loads(
            (tmp_path / f"state/serving/local/{record['slot']}/status.json").read_text()
        )
        workers = status["workers"]
        assert len(workers) == 2

        os.kill(record["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(is_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(is_alive(pid) for pid in workers), "workers outlived their supervisor"
        with pytest.raises(OSError):  # nothing is left answering on the port
            urllib.request.urlopen(f"{url}/ping", timeout=2)

        result = modelyard("deploy", "local")
        assert result.returncode == 0 and "serving version" in result.stdout, result.stderr
        assert "already serving" not in result.stdout
        clean, _ = churn_frame(50, seed=3)
        status_code, body, _ = score(url, {"dataframe_records": records(clean)})
        assert status_code == 200 and len(body["predictions"]) == 50
    finally:
        modelyard("deploy", "local", "--stop")


def _registered_by_the_pipeline(model: str, version: str) -> None:
    """The lineage, gate and metric training records on a version (these are logged by hand)."""
    from modelyard.contracts.tags import Gate, Lineage

    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model, version).run_id
    assert run_id is not None
    client.log_metric(run_id, "roc_auc", 0.9)
    recorded = {**Lineage("local", "0" * 40, "test", "d" * 64, "data.csv").to_tags(),
                **Gate("roc_auc >= 0.5", "0.900000", passed=True).to_tags()}  # fmt: skip
    for key, value in recorded.items():
        client.set_model_version_tag(model, version, key, value)


def test_a_canary_the_local_server_rolls_back_stays_rolled_back(
    local_env: int, environments: Path, model_name: str, model_a: Trained,
    model_needs_new_column: Trained,
) -> None:  # fmt: skip
    """The server judges its canary and rolls it back at once; the environment's own rollback
    then moves the alias, the file and the history back, so a new server serves the stable one."""
    from tests.helpers import edit_environment

    edit_environment(environments, "local", {
        "promotion.rollout.strategy": "canary", "promotion.rollout.canarySteps": [50, 100],
        "promotion.gates": ["roc_auc >= 0.5"],
        "monitoring.canaryStepSeconds": 30, "monitoring.canaryMinRequests": 10,
    })  # fmt: skip
    stable = register(*model_a, model_name)
    broken = register(*model_needs_new_column, model_name)
    for version in (stable, broken):
        _registered_by_the_pipeline(model_name, version)
    client = mlflow.MlflowClient()
    url = f"http://127.0.0.1:{local_env}"
    try:
        assert (
            modelyard("promote", model_name, "--to", "local", "--version", stable).returncode == 0
        )
        assert modelyard("deploy", "local").returncode == 0
        with Load(url, records(churn_frame(50, seed=3)[0]), threads=2) as load:
            promoted = modelyard("promote", model_name, "--to", "local", "--version", broken)
            assert promoted.returncode == 0, promoted.stdout + promoted.stderr
            deadline = time.monotonic() + 90
            while client.get_model_version_by_alias(model_name, "local").version != stable:
                assert time.monotonic() < deadline, "the alias never went back"
                time.sleep(0.5)
        assert load.failures == [] and load.versions[broken] == 0
        record = json.loads(modelyard("history", model_name, "--env", "local", "--json").stdout)[-1]
        assert (record["action"], record["from_version"], record["to_version"]) == (
            "rollback", int(broken), int(stable))  # fmt: skip
        assert record["reason"].startswith(f"automatic: the server rolled version {broken} back")
        assert "maxErrorRate" in record["reason"]
        text = (environments / "Pulumi.local.yaml").read_text()
        assert f"desiredVersion: {stable}\n" in text
        # A new server (a restart, the runner's next deploy) serves the stable version.
        replaced = modelyard("deploy", "local", "--replace")
        assert replaced.returncode == 0 and f"serving version {stable}" in replaced.stdout
    finally:
        modelyard("deploy", "local", "--stop")


def test_two_models_are_served_side_by_side_and_deployed_on_their_own(
    local_env: int, model_name: str, model_a: Trained, model_b: Trained, environments: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A second model under `modelyard:models` has its own port, alias, server and state: moving
    its version and redeploying it, or stopping it, leaves the first model's server as it was."""
    from ruamel.yaml import YAML

    second, port = f"{model_name}-tiers", free_port()
    path = environments / "Pulumi.local.yaml"
    round_trip = YAML()
    document = round_trip.load(path.read_text())
    document["config"]["modelyard:models"] = {second: {"localPort": port}}
    with path.open("w") as handle:
        round_trip.dump(document, handle)
    client = mlflow.MlflowClient()
    a1 = register(*model_a, model_name)
    b1, b2 = register(*model_b, second), register(*model_a, second)
    client.set_registered_model_alias(model_name, "local", a1)
    client.set_registered_model_alias(second, "local", b1)
    first_url, second_url = f"http://127.0.0.1:{local_env}", f"http://127.0.0.1:{port}"
    try:
        assert modelyard("deploy", "local").returncode == 0
        deployed = modelyard("deploy", "local", "--model", second)
        assert deployed.returncode == 0, deployed.stderr
        assert f"local ({second}): serving version {b1}" in deployed.stdout
        rows = {"dataframe_records": records(churn_frame(20, seed=3)[0])}

        def identity(url: str) -> tuple[str, str]:
            status, body, _ = score(url, rows)
            assert status == 200, body
            with urllib.request.urlopen(f"{url}/version", timeout=5) as answer:
                return json.loads(answer.read())["model_name"], body["model_version"]

        def first_server() -> int:
            record = tmp_path / "state" / "serving" / "local" / "deploy.json"
            return int(json.loads(record.read_text())["pid"])

        first, pid = identity(first_url), first_server()
        assert first == (model_name, a1) and identity(second_url) == (second, b1)

        client.set_registered_model_alias(second, "local", b2)
        again = modelyard("deploy", "local", "--model", second, "--replace")
        assert again.returncode == 0 and f"serving version {b2}" in again.stdout, again.stderr
        assert identity(second_url) == (second, b2)
        assert identity(first_url) == first and first_server() == pid  # the same server
        assert "already serving" in modelyard("deploy", "local").stdout

        # Drift is judged on each model's own live samples, against its own training profile.
        for seed in range(20):
            traffic = {"dataframe_records": records(churn_frame(20, seed=100 + seed)[0])}
            assert score(second_url, traffic)[0] == 200
        time.sleep(2)  # the samples reach their files
        checked = modelyard("monitor", "drift", "local", "--model", second,
                            "--textfile-dir", str(tmp_path))  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        (report,) = (tmp_path / "state" / "reports").glob(f"drift-local-{second}-*.html")
        assert f"Drift of {second} v{b2} in local" in report.read_text()
        assert "local: no drift in" in checked.stdout
        # Its own file and series for Prometheus, beside training.model's.
        exposed = (tmp_path / f"modelyard-drift-local-{second}.prom").read_text()
        assert f'modelyard_drift_detected{{environment="local",model="{second}"}} 0.0' in exposed

        stopped = modelyard("deploy", "local", "--model", second, "--stop")
        assert f"local ({second}): stopped" in stopped.stdout
        assert identity(first_url) == first and first_server() == pid
        refused = modelyard("deploy", "local", "--model", "nobody")
        assert refused.returncode == 2 and f"serves {model_name}, {second}" in refused.stderr
    finally:
        modelyard("deploy", "local", "--model", second, "--stop")
        modelyard("deploy", "local", "--stop")
