"""The train stage in the model's training image (pipeline.trainIn: container), under the local
runner's monitor: the container is killed mid-training, started again, and training resumes from
its checkpoint in the mounted state folder instead of starting over. The image installs what the
model's model.yaml declares; without Docker the stage says how to fix the setting."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from modelyard.ml.data.sample import generate_churn
from modelyard.ml.spec import load_model_spec
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.pipeline.runner import supervise
from modelyard.pipelines.pipeline.stages import stage_named
from modelyard.pipelines.pipeline.training_image import build_context, ensure_image, image_tag

from tests.docker_helpers import docker
from tests.helpers import REPO, edit_environment, run_cli


@pytest.fixture(scope="session")
def training_image(base_image: str) -> str:
    """Built once; its tag is its content's, so the pipeline finds and reuses it (kept)."""
    return ensure_image(load_model_spec("churn"), print)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.integration
def test_a_killed_training_container_is_restarted_and_resumes_from_its_checkpoint(
    training_image: str, tracking: str, environments: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    state = tmp_path / "state"
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(state))
    edit_environment(environments, "local", {
        "mlflow.trackingUri": tracking, "mlflow.experiment": f"train-container-{tmp_path.name}",
        "training.numBoostRound": 120, "training.checkpointEvery": 5,
        "training.gate": "roc_auc >= 0.6", "pipeline.trainIn": "container",
    })  # fmt: skip
    data = tmp_path / "churn.csv"
    generate_churn(4000, seed=5).to_csv(data, index=False)
    ctx = PipelineContext.load_or_start(f"container-{tmp_path.name}", "local", str(data))
    ctx.model = "churn"
    lines: list[str] = []
    failures: list[BaseException] = []

    def monitor() -> None:
        try:
            supervise(stage_named("train"), ctx, 2, lines.append)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    runner = threading.Thread(target=monitor)
    runner.start()
    name = _kill_mid_training(state, ctx, runner, failures, lines)
    runner.join(timeout=600)
    output = "\n".join(lines)
    assert not runner.is_alive() and not failures, f"{failures}\n{output[-3000:]}"

    assert f"training in container {name} (image {training_image})" in output
    assert output.count("training in container") == 2  # the restart is a new container
    assert "monitor: train died (SIGKILL)" in output and "resume #1" in output
    assert ctx.restarts == {"train": 1} and ctx.metrics["roc_auc"] >= 0.6
    assert ctx.training_run_id is not None
    run = MlflowClient().get_run(ctx.training_run_id)
    assert run.data.tags["modelyard.resumes"] == "1"
    assert run.data.tags["modelyard.monitor.restarts"] == "1"
    assert docker("ps", "-a", "-q", "--filter", f"name=^{name}$") == ""  # nothing left running


def test_training_in_a_container_without_docker_fails_with_the_fix(
    environments: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_STATE_DIR", str(tmp_path / "state"))
    edit_environment(environments, "local", {"pipeline.trainIn": "container"})
    result = run_cli("pipeline", "stage", "train", "local", "--data", str(tmp_path / "x.csv"),
                     "--run-id", "no-docker", env={"PATH": str(Path(sys.executable).parent)})  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = result.stderr.strip().splitlines()
    assert message == (
        f"error: {environments / 'Pulumi.local.yaml'}: modelyard:pipeline.trainIn is `container` "
        "but the docker client is not installed. Start Docker, or set "
        "modelyard:pipeline.trainIn to `process`."
    )


def test_the_training_image_installs_what_the_model_declares_and_is_rebuilt_when_that_changes(
    tmp_path: Path,
) -> None:
    spec = load_model_spec("churn")
    context = build_context(tmp_path / "a", spec)
    assert "lightgbm==4.7.0" in (context / "model-requirements.txt").read_text().splitlines()
    assert image_tag(context, spec) == image_tag(build_context(tmp_path / "b", spec), spec)
    changed = spec.model_copy(update={"requirements": [*spec.requirements, "shap==0.48.0"]})
    assert image_tag(build_context(tmp_path / "c", changed), changed) != image_tag(context, spec)


def test_the_training_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hadolint")), "--failure-threshold", "info",
         str(REPO / "infra/images/train/Dockerfile")], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _kill_mid_training(
    state: Path, ctx: PipelineContext, runner: threading.Thread,
    failures: list[BaseException], lines: list[str],
) -> str:  # fmt: skip
    """`docker kill -s KILL` the training container once its checkpoint holds 20 trees."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        assert runner.is_alive(), (
            f"training ended before it could be killed: {failures}\n" + "\n".join(lines)[-3000:]
        )
        checkpoints = list(state.glob("training/*/fit-*/model.txt"))
        marker = ctx.folder / "train.container"
        if marker.is_file() and checkpoints and checkpoints[0].read_text().count("Tree=") >= 20:
            name = marker.read_text()
            docker("kill", "-s", "KILL", name)
            return name
        time.sleep(0.05)
    raise AssertionError("training never reached its kill point")
