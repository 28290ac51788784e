"""`modelyard pipeline run` end to end, for real: a real mlflow server, real training, real
promotion and local model servers; the monitor restarting a killed training process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.notification_sink import NotificationSink

from tests.helpers import MODELYARD, REPO, edit_environment, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def pipeline_env(
    tracking: str, environments: Path, tmp_path: Path, webhook: NotificationSink,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:  # fmt: skip
    """Environment copies wired to this test: its own experiment, free ports, its webhook."""
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    experiment = f"pipeline-{tmp_path.name}"
    for name in ("local", "staging", "production"):
        edit_environment(environments, name, {
            "mlflow.trackingUri": tracking, "mlflow.experiment": experiment,
            "serving.localPort": free_port(), "notify.webhooks": [{"url": webhook.url}],
        })  # fmt: skip
    for name in ("staging", "production"):  # the embedded default: local server processes
        edit_environment(environments, name, {"serving.platform": "process"})
    edit_environment(environments, "local", {"training.numBoostRound": 120, "training.checkpointEvery": 5,
                                             "training.gate": "roc_auc >= 0.6",
                                             "pipeline.smokeRequests": 150})  # fmt: skip
    edit_environment(
        environments,
        "staging",
        {
            "promotion.trainedFor": ["local"],
            "monitoring.sampleRate": 1.0,
            "promotion.gates": ["roc_auc >= 0.6"],
        },  # small data, low bar
    )
    edit_environment(
        environments,
        "production",
        {"promotion.soakMinutes": 0, "notify.email": None, "promotion.gates": ["roc_auc >= 0.6"]},
    )
    data = tmp_path / "churn.csv"
    generate_churn(4000, seed=5).to_csv(data, index=False)
    yield data
    for env in ("staging", "production"):
        run_cli("deploy", env, "--stop")


def _stage_pid(state: Path) -> int | None:
    for path in state.glob("pipeline/*/train.pid"):
        return int(path.read_text())
    return None


def test_pipeline_survives_a_killed_training_and_a_killed_server_and_ends_in_production(
    pipeline_env: Path, tmp_path: Path, webhook: NotificationSink
) -> None:
    state = tmp_path / "state"
    log = tmp_path / "pipeline.log"
    # First half: up to staging, with the training process killed mid-boosting.
    process = subprocess.Popen(
        [MODELYARD, "pipeline", "run", "local", "--data", str(pipeline_env), "--run-id", "e2e",
         "--until", "deploy-staging", "--reason", "drift in local: region (report r.html)"],
        stdout=subprocess.PIPE, stderr=log.open("wb"), cwd=REPO, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + 400
    killed = False
    while time.monotonic() < deadline and not killed:
        checkpoints = list(state.glob("training/*/fit-*/model.txt"))
        pid = _stage_pid(state)
        if pid and checkpoints and checkpoints[0].read_text().count("Tree=") >= 20:
            os.kill(pid, signal.SIGKILL)
            killed = True
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    assert killed, "training never reached its kill point"
    stdout, _ = process.communicate(timeout=600)
    first_half = stdout.decode() + log.read_text()
    assert process.returncode == 0, first_half[-4000:]
    assert "monitor: train died (SIGKILL)" in first_half
    assert "resuming from its checkpoint" in first_half
    assert "stopped after deploy-staging; continue with" in first_half

    # Between the halves the staging server dies; the monitor starts it again before the
    # smoke test needs it.
    staging = json.loads((state / "serving/staging/deploy.json").read_text())
    os.kill(staging["pid"], signal.SIGKILL)
    result = run_cli("pipeline", "run", "local", "--data", str(pipeline_env), "--run-id", "e2e",
                     "--json")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    ctx = json.loads(result.stdout)
    assert [s for s, v in ctx["stages"].items() if v["status"] == "passed"] == [
        "checkout", "unit-tests", "validate-data", "train", "evaluate", "register", "package",
        "deploy-staging", "smoke-test", "promote-production", "deploy-production", "notify",
    ]  # fmt: skip
    assert ctx["restarts"] == {"train": 1, "serving-staging": 1}
    assert "monitor: the staging serving process is gone; starting it again" in output
    assert "pipeline summary" in output and "train killed by SIGKILL; restarted" in output
    assert "staging serving process died; restarted" in output
    assert json.loads((state / "serving/staging/deploy.json").read_text())["pid"] != staging["pid"]

    client = MlflowClient()
    run = client.get_run(ctx["training_run_id"])
    assert (
        run.data.tags["modelyard.monitor.restarts"] == "1"
        and run.data.tags["modelyard.resumes"] == "1"
    )
    for env in ("staging", "production"):
        assert int(client.get_model_version_by_alias("churn", env).version) == ctx["version"]
        answer = json.loads(subprocess.run(["curl", "-s", f"{ctx['serving'][env]}/version"],
                                           capture_output=True, text=True).stdout)  # fmt: skip
        assert str(answer["model_version"]) == str(ctx["version"])
    version = client.get_model_version("churn", str(ctx["version"]))
    assert version.tags["modelyard.pipeline.run_id"] == ctx["run_id"]
    # Why the run started (a drift check names its report) stays with what it produced.
    assert version.tags["modelyard.pipeline.reason"] == "drift in local: region (report r.html)"
    promoted = json.loads(run_cli("history", "churn", "--env", "production", "--json").stdout)
    assert promoted[-1]["trigger"] == "drift in local: region (report r.html)"
    assert version.tags["modelyard.package.digest"] == ctx["package"]["digest"]
    assert webhook.bodies[-1]["event"] == "success"
    assert (
        webhook.bodies[-1]["subject"] == f"churn version {ctx['version']} is serving in production"
    )

    # A push of settings alone (Jenkins' BUILD_KIND `deploy`): the stages Jenkins then runs,
    # in a build of their own, deploy what the files say and promote nothing.
    build = {**os.environ, "MODELYARD_PIPELINE_RUN_ID": "jenkins-deploy-1"}
    for stage in ("checkout", "deploy-staging", "smoke-test", "promote-production",
                  "deploy-production", "notify"):  # fmt: skip
        done = subprocess.run([MODELYARD, "pipeline", "stage", stage, "local", "--data",
                               str(pipeline_env)], capture_output=True, text=True, cwd=REPO,
                              env=build, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, f"{stage}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        if stage in ("deploy-staging", "promote-production"):
            assert "this run registered no version" in done.stdout + done.stderr
    for env in ("staging", "production"):
        assert int(client.get_model_version_by_alias("churn", env).version) == ctx["version"]
    assert len(json.loads(run_cli("history", "churn", "--env", "production", "--json").stdout)) == (
        len(promoted)
    )
    assert webhook.bodies[-1]["subject"] == (
        "churn: a settings change is deployed (this run trained no version)"
    )


def test_a_failing_gate_stops_the_pipeline_before_registration_and_notifies(
    pipeline_env: Path, environments: Path, webhook: NotificationSink
) -> None:
    edit_environment(environments, "local", {"training.gate": "roc_auc >= 0.99", "training.budget.trials": 2,
                                             "training.numBoostRound": 30})  # fmt: skip
    result = run_cli("pipeline", "run", "local", "--data", str(pipeline_env))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "stage train failed" in result.stderr
    assert "gate `roc_auc >= 0.99` not met" in " ".join(result.stdout.split())
    assert "register" not in result.stdout.split("pipeline summary")[1]
    [failure] = [
        b for b in webhook.bodies if b["event"] == "failure" and "pipeline" in b["subject"]
    ]
    assert failure["stage"] == "train" and failure["version"] is None
    versions = MlflowClient().search_model_versions("name='churn'")
    assert not [v for v in versions if v.tags.get("modelyard.gate.rule") == "roc_auc >= 0.99"]


def test_pipeline_run_model_trains_and_promotes_that_model_only(
    pipeline_env: Path, tmp_path: Path, environments: Path, tracking: str
) -> None:
    """`--model demand`: the regression sample model through every stage, served beside churn
    (`modelyard:models`) on its own port; churn is neither trained nor promoted."""
    from modelyard.ml.data.sample import generate_demand

    ports = {env: free_port() for env in ("staging", "production")}
    gates = {"binary": ["roc_auc >= 0.6"], "regression": ["r2 >= 0.5"]}
    for env, port in ports.items():
        edit_environment(environments, env, {"models": {"demand": {"localPort": port}},
                                             "promotion.gates": gates})  # fmt: skip
    edit_environment(environments, "local", {
        "training.gate": {"binary": "roc_auc >= 0.6", "regression": "r2 >= 0.5"}})  # fmt: skip
    data = tmp_path / "demand.csv"
    generate_demand(4000, seed=5).to_csv(data, index=False)
    try:
        done = run_cli("pipeline", "run", "local", "--data", str(data), "--model", "demand",
                       "--json", timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-5000:]
        ctx = json.loads(done.stdout)
        assert ctx["model"] == "demand" and ctx["promoted"] == {"staging": True, "production": True}
        assert "model demand" in done.stderr and "candidate r2 " in done.stderr
        client = MlflowClient()
        aliases = client.get_registered_model("demand").aliases
        assert aliases == {"staging": str(ctx["version"]), "production": str(ctx["version"])}
        for env in ports:  # churn's release keys untouched, demand's written
            config = yaml.safe_load((environments / f"Pulumi.{env}.yaml").read_text())["config"]
            assert "desiredVersion" not in config["modelyard:serving"]
            assert config["modelyard:models"]["demand"]["desiredVersion"] == ctx["version"]
        for env, port in ports.items():
            assert ctx["serving"][env] == f"http://127.0.0.1:{port}"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as answer:
                identity = json.loads(answer.read())
            assert (identity["model_name"], identity["stable"]["prediction"]["task"]) == (
                "demand", "regression")  # fmt: skip
    finally:
        for env in ports:
            run_cli("deploy", env, "--model", "demand", "--stop")


def test_data_pushed_to_mlflow_trains_by_its_uri_with_no_file_on_this_machine(
    pipeline_env: Path, tmp_path: Path
) -> None:
    """`data push` puts the file in the environment's MLflow and prints a runs:/ URI; a pipeline
    run given that URI trains, registers, deploys and smoke-tests with the file gone from here,
    and the version's lineage names the URI and the file's digest."""
    from modelyard.contracts import tags
    from modelyard.ml.data.dataset import read_dataset
    from modelyard.ml.data.publish import EXPERIMENT

    digest = read_dataset(pipeline_env).digest
    pushed = run_cli("data", "push", "local", "--data", str(pipeline_env))
    assert pushed.returncode == 0, pushed.stderr
    uri = pushed.stdout.strip()
    assert uri.startswith("runs:/") and uri.endswith("/data/churn.csv"), pushed.stdout
    assert f"pipeline run local --data {uri}" in " ".join(pushed.stderr.split())
    again = run_cli("data", "push", "local", "--data", str(pipeline_env))
    assert again.stdout.strip() == uri and "already there" in again.stderr
    # Bad data is refused whole: nothing reaches the store.
    bad = tmp_path / "no-target.csv"
    frame = read_dataset(pipeline_env).frame.drop(columns=["churned"])
    frame.to_csv(bad, index=False)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs_before = len(client.search_runs([experiment.experiment_id]))
    refused = run_cli("data", "push", "local", "--data", str(bad))
    assert refused.returncode == 1 and "not pushed" in refused.stderr, refused.stderr
    assert len(client.search_runs([experiment.experiment_id])) == runs_before
    # A URI that names nothing: one line, before any training.
    missing = uri.replace("/data/churn.csv", "/data/gone.csv")
    wrong = run_cli("pipeline", "stage", "validate-data", "local", "--data", missing,
                    "--run-id", "missing-data")  # fmt: skip
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    (message,) = wrong.stderr.strip().splitlines()
    assert f"--data {missing}: cannot be read" in message and "data push" in message

    pipeline_env.unlink()  # trained from the store alone
    done = run_cli("pipeline", "run", "local", "--data", uri, "--run-id", "from-uri",
                   "--until", "smoke-test", "--json", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    ctx = json.loads(done.stdout)
    assert ctx["data"] == uri and ctx["stages"]["smoke-test"]["status"] == "passed"
    assert f"150 requests to {ctx['serving']['staging']}: all answered" in done.stderr
    copy = tmp_path / "state" / "datasets" / "from-uri" / "churn.csv"
    assert read_dataset(copy).digest == digest
    version = client.get_model_version("churn", str(ctx["version"]))
    assert version.tags[tags.Lineage.DATASET_PATH] == uri
    assert version.tags[tags.Lineage.DATASET_DIGEST] == digest
    (dataset_input,) = client.get_run(ctx["training_run_id"]).inputs.dataset_inputs
    assert uri in dataset_input.dataset.source
