"""`modelyard train` for real: LightGBM, a real `mlflow server`, the gate loop, crash-resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from modelyard.contracts import artifacts
from modelyard.ml.data.sample import generate_churn
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.notification_sink import NotificationSink

from tests.helpers import MODELYARD, REPO, edit_environment, edit_local_training, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "churn.csv"
    generate_churn(3000, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(folder))
    return folder


def _versions_of(run_id: str) -> list[int]:
    return [
        int(v.version)
        for v in MlflowClient().search_model_versions(f"name='churn' and run_id='{run_id}'")
    ]


def test_train_tracks_registers_with_lineage_and_notifies(
    tracking: str, environments: Path, state: Path, churn_csv: Path, webhook: NotificationSink
) -> None:
    edit_local_training(
        environments, "train-ok", gate="roc_auc >= 0.6", numBoostRound=60, checkpointEvery=10
    )
    edit_environment(environments, "local", {"notify.webhooks": [{"url": webhook.url}]})

    result = run_cli("train", "local", "--data", str(churn_csv), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "Warning" not in result.stderr  # library hints stay off the terminal, both processes'

    digest = hashlib.sha256(churn_csv.read_bytes()).hexdigest()
    assert out["dataset_digest"] == digest
    assert out["gate"] == {"metric": "roc_auc", "operator": ">=", "threshold": 0.6,
                           "value": out["metrics"]["roc_auc"], "passed": True,
                           "rule": "roc_auc >= 0.6"}  # fmt: skip
    assert out["model_name"] == "churn" and out["model_version"] >= 1
    assert 0.6 <= out["metrics"]["roc_auc"] <= 1 and "accuracy" in out["metrics"]

    client = MlflowClient()
    version = client.get_model_version("churn", str(out["model_version"]))
    assert version.run_id == out["run_id"]
    commit = version.tags["modelyard.git.commit"].removesuffix("-dirty")
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, check=False)
    assert len(commit) == 40 and known.returncode == 0
    assert version.tags["modelyard.dataset.digest"] == digest
    assert version.tags["modelyard.gate.passed"] == "true"
    assert version.tags["modelyard.gate.rule"] == "roc_auc >= 0.6"
    assert version.tags["modelyard.environment"] == "local"
    assert "modelyard.pipeline.run_id" in version.tags

    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == digest[:32]
    assert run.data.metrics["roc_auc"] == pytest.approx(out["metrics"]["roc_auc"])
    plots = {a.path for a in client.list_artifacts(out["run_id"], artifacts.PLOTS)}
    assert plots == {f"{artifacts.PLOTS}/{n}.png" for n in
                         ("feature_importance", "roc_curve", "precision_recall_curve", "confusion_matrix")}  # fmt: skip

    [trial] = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'"
    )
    history = client.get_metric_history(trial.info.run_id, "valid_auc")
    assert len(history) >= 30 and [m.step for m in history] == sorted({m.step for m in history})

    info = mlflow.models.get_model_info(f"models:/churn/{out['model_version']}")
    assert "lightgbm" in info.flavors and info.signature is not None
    assert "contract" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None
    booster = mlflow.lightgbm.load_model(f"models:/churn/{out['model_version']}")
    assert booster.num_trees() <= 60

    [sent] = webhook.bodies
    assert sent["event"] == "success" and sent["model_version"] == out["model_version"]
    assert sent["subject"].startswith(
        f"the best model is ready: churn version {out['model_version']}"
    )


def test_gate_out_of_budget_registers_nothing_and_reports_the_gap(
    tracking: str, environments: Path, state: Path, churn_csv: Path, webhook: NotificationSink
) -> None:
    edit_local_training(environments, "train-gate", gate="roc_auc >= 0.99", numBoostRound=30,
               budget={"trials": 3, "minutes": 10})  # fmt: skip
    edit_environment(environments, "local", {"notify.webhooks": [{"url": webhook.url}]})

    result = run_cli("train", "local", "--data", str(churn_csv), "--json")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["model_version"] is None and out["gate"]["passed"] is False and out["trials"] == 3
    message = " ".join(result.stderr.split())
    best = out["metrics"]["roc_auc"]
    assert f"best roc_auc {best:.4f}" in message and f"{0.99 - best:.4f} short" in message
    assert "Nothing was registered" in message and "trial budget" in message
    assert _versions_of(out["run_id"]) == []
    run = MlflowClient().get_run(out["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["modelyard.gate.passed"] == "false"
    nested = MlflowClient().search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'"
    )
    assert len(nested) == 3  # the baseline and two tuned trials, each a nested run
    assert [b["event"] for b in webhook.bodies] == ["failure"]


def test_bad_data_is_rejected_before_any_run_or_registration(
    tracking: str, environments: Path, state: Path, tmp_path: Path, webhook: NotificationSink
) -> None:
    edit_local_training(environments, "train-bad-data")
    edit_environment(environments, "local", {"notify.webhooks": [{"url": webhook.url}]})
    frame = generate_churn(2000, seed=2)
    frame.loc[:20, "contract"] = "lifetime"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)

    result = run_cli("train", "local", "--data", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "contract" in result.stderr and "nothing was trained" in result.stderr
    assert MlflowClient().get_experiment_by_name("train-bad-data") is None
    assert [b["event"] for b in webhook.bodies] == ["failure"]


def test_unreachable_tracking_server_is_one_clear_error(
    environments: Path, state: Path, churn_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    result = run_cli("train", "local", "--data", str(churn_csv), "--no-notify")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot be reached" in result.stderr and "MLFLOW_TRACKING_URI" in result.stderr


def _start_training(churn_csv: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [MODELYARD, "train", "local", "--data", str(churn_csv), "--json", "--no-notify"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ),
    )  # fmt: skip


def _wait_for(condition, process: subprocess.Popen[bytes], timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "training ended before the kill point"
        time.sleep(0.05)
    pytest.fail("the kill point was never reached")


def _rounds_in(checkpoint: Path) -> int:
    try:
        return checkpoint.read_text().count("Tree=")
    except FileNotFoundError:
        return 0


def test_kill_9_mid_boosting_resumes_from_the_checkpoint_to_the_same_quality(
    tracking: str, environments: Path, state: Path, churn_csv: Path, tmp_path: Path
) -> None:
    # No early stopping and no bagging: the uninterrupted fit is the reference to match.
    settings = dict(gate="roc_auc >= 0.6", numBoostRound=400, earlyStoppingRounds=None,
                    checkpointEvery=5, params={"learning_rate": 0.02, "num_leaves": 15})  # fmt: skip
    edit_local_training(environments, "train-resume", **settings)
    process = _start_training(churn_csv, tmp_path / "first.log")
    _wait_for(
        lambda: any(_rounds_in(p) >= 60 for p in state.glob("training/*/fit-*/model.txt")), process
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    [checkpoint] = state.glob("training/*/fit-*/model.txt")
    rounds_before = _rounds_in(checkpoint)
    assert 60 <= rounds_before < 400

    resumed = run_cli("train", "local", "--data", str(churn_csv), "--json", "--no-notify")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["resumes"] == 1 and out["model_version"] is not None
    assert "resuming" in resumed.stderr and "resuming from its checkpoint" in resumed.stderr
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.data.tags["modelyard.resumes"] == "1"
    [trial] = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'"
    )
    assert trial.data.tags["modelyard.resumed"] == "true"
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "valid_auc")]
    assert steps == list(range(1, 401))  # every round logged once: nothing lost, nothing redone

    edit_local_training(environments, "train-resume-reference", **settings)
    reference = run_cli("train", "local", "--data", str(churn_csv), "--json", "--no-notify")
    assert reference.returncode == 0, reference.stderr
    expected = json.loads(reference.stdout)["metrics"]["roc_auc"]
    assert out["metrics"]["roc_auc"] == pytest.approx(expected, abs=2e-3)


def test_kill_9_during_tuning_does_not_redo_finished_trials(
    tracking: str, environments: Path, state: Path, churn_csv: Path, tmp_path: Path
) -> None:
    edit_local_training(environments, "train-resume-tuning", gate="roc_auc >= 0.99", numBoostRound=40,
               checkpointEvery=5, budget={"trials": 3, "minutes": 10})  # fmt: skip
    process = _start_training(churn_csv, tmp_path / "first.log")

    def second_trial_checkpointed() -> bool:
        return len(list(state.glob("training/*/fit-*/model.txt"))) >= 2 and any(
            not (p.parent / "final.txt").exists() for p in state.glob("training/*/fit-*/model.txt")
        )

    _wait_for(second_trial_checkpointed, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    resumed = run_cli("train", "local", "--data", str(churn_csv), "--json", "--no-notify")
    assert resumed.returncode == 1  # the gate is out of reach: the budget, not the crash, ends it
    out = json.loads(resumed.stdout)
    assert out["trials"] == 3 and out["resumes"] == 1
    assert "trial 0:" not in resumed.stderr  # finished before the kill: not trained again
    client = MlflowClient()
    experiment = client.get_experiment_by_name("train-resume-tuning").experiment_id
    nested = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{out['run_id']}'")
    # One nested run per trial; the interrupted trial went on in its own run, resumed.
    assert len(nested) == 3 and all(r.info.status == "FINISHED" for r in nested)
    assert [r.data.tags["modelyard.trial"] for r in nested].count("0") == 1
    assert sum(r.data.tags.get("modelyard.resumed") == "true" for r in nested) == 1
    assert all(r.info.status == "FINISHED" for r in nested)
