"""The train stage inside the model's training image. The checkout and data are mounted
read-only (a --data URI is copied into the state folder first), the state folder read-write at
the same paths (checkpoints outlive the container, so a restarted one resumes), MLflow is reached
over the host's network. The container runs in the foreground, so whoever supervises the stage
(the local monitor, Jenkins' retry) sees it end."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable

from modelyard.contracts import variables
from modelyard.contracts.environment import Environment, environments_dir, project_root
from modelyard.contracts.state import state_dir
from modelyard.ml.data import source
from modelyard.ml.spec import load_model_spec
from modelyard.pipelines.docker_cli import docker, engine_problem, stream
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.pipeline.training_image import ensure_image

# Passed by name only: docker copies each value from this process, so none is on a command line.
# The checkout is mounted a second time as the `modelyard` namespace package the image runs.
NAMESPACE_ROOT = "/opt/modelyard-src"
PASSED_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME",
               "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", variables.PIPELINE_RUN_ID,
               variables.PIPELINE_REASON)  # fmt: skip


def inside() -> bool:
    return os.environ.get(variables.TRAINING_CONTAINER) == "1"


def container_name(run_id: str) -> str:
    return "modelyard-train-" + re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)


def run_arguments(ctx: PipelineContext, image: str) -> list[str]:
    root, state, envs = project_root(), state_dir(), environments_dir()
    # A URI's copy is in the state folder already (train_in_container fetched it).
    data = [] if source.is_uri(ctx.data) else ["-v", f"{ctx.data}:{ctx.data}:ro"]
    return [
        "run", "--rm", "--name", container_name(ctx.run_id), "--network", "host",
        # The caller's uid: checkpoints in the state folder stay the caller's files.
        "--user", f"{os.getuid()}:{os.getgid()}", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{root}:{root}:ro", "-w", str(root),
        "-v", f"{root}:{NAMESPACE_ROOT}/modelyard:ro", "-e", f"PYTHONPATH={NAMESPACE_ROOT}",
        "-v", f"{state}:{state}", "-e", f"{variables.STATE_DIR}={state}",
        *data,
        "-v", f"{envs}:{envs}:ro", "-e", f"{variables.ENVIRONMENTS_DIR}={envs}",
        *[arg for name in PASSED_VARS for arg in ("-e", name)],
        image, "pipeline", "stage", "train", ctx.env, "--data", ctx.data, "--run-id", ctx.run_id,
    ]  # fmt: skip


def train_in_container(
    ctx: PipelineContext, environment: Environment, say: Callable[[str], None]
) -> None:
    """Run the train stage in its container; its results land in the run's context file."""
    problem = engine_problem()
    if problem:
        raise PipelineError(
            f"{environment.path}: modelyard:pipeline.trainIn is `container` but {problem}. "
            "Start Docker, or set modelyard:pipeline.trainIn to `process`."
        )
    image = ensure_image(load_model_spec(ctx.model), say)
    source.local_file(ctx.data, state_dir(), environment.mlflow)  # a URI's, before the container
    name = container_name(ctx.run_id)
    docker("rm", "-f", name)  # left running by a supervisor that died: it would hold the name
    (ctx.folder / "train.container").write_text(name)
    say(f"training in container {name} (image {image})")
    code, _ = stream(run_arguments(ctx, image), say)
    if code > 128 and code - 128 in signal.valid_signals():
        say(f"training container {name} was killed ({signal.Signals(code - 128).name})")
        # Exit as the container did (128 + signal): a supervisor restarts a killed stage.
        raise SystemExit(code)
    if code != 0:
        raise PipelineError(f"training container {name} exited with code {code} (see above)")
    done = PipelineContext.load_or_start(ctx.run_id, ctx.env, ctx.data)
    ctx.training_run_id, ctx.metrics = done.training_run_id, done.metrics
