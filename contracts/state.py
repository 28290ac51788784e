"""The state folder: the one ignored folder (`.modelyard/` of the checkout, or
MODELYARD_STATE_DIR) where local runs keep what they need between commands. Its layout is
defined here once; the README's table is checked against `LAYOUT`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts import variables
from modelyard.contracts.environment import project_root

FOLDER = ".modelyard"


@dataclass(frozen=True)
class Part:
    path: str
    holds: str
    safe_to_delete: str


LAYOUT = (
    Part("pipeline/RUN", "each pipeline run's context (stage results): a run resumes from it",
         "once the run has ended"),
    Part("training/JOB", "a training job's checkpoints: a killed training resumes from them",
         "when no training runs (the next one starts from zero)"),
    Part("datasets/RUN", "the copy of a pipeline run's --data URI, when it trains on this machine",
         "when that run no longer runs (a stage that needs it fetches it again)"),
    Part("serving/ENV", "the local model servers: slots, logs, the live samples drift reads",
         "when the servers are stopped (the drift samples go with it)"),
    Part("serving-models/ENV/MODEL", "the same for each model of `modelyard:models`, served "
         "beside training.model", "when its server is stopped"),
    Part("promotion", "the machine's promotion locks", "when no promotion runs"),
    Part("reports", "drift reports", "any time"),
    Part("logs", "logs of background work (retraining the monitor started, the git hook)",
         "any time"),
    Part("ansible/ENV", "the inventory and variables `modelyard configure` hands Ansible",
         "any time (written again by the next run)"),
    Part("pulumi-state", "the Pulumi file backend: what each stack created, and its secrets",
         "never while a stack has resources: `modelyard infra destroy ENV` first"),
    Part("image-contexts", "the build contexts `pulumi up` assembled for the platform's images",
         "any time (assembled again by the next `up`)"),
    Part("cluster", "the local Kubernetes (`modelyard cluster up`): its nodes' record, SSH key, "
         "inventory, admin kubeconfig and shared volumes (etcd's data and images live in the node "
         "containers' Docker volumes)",
         "after `modelyard cluster down --destroy` (before it, the nodes would be left without "
         "their record)"),
    Part("demo", "everything `make demo` makes, laid out as above, and its MLflow server",
         "when the demo is not running (its runs and models go with it)"),
    Part("demo-cluster", "`make demo-cluster`'s project (environment copies), state, stacks and cluster",
         "after the demo stopped, and its stacks are destroyed (`modelyard infra destroy` from its project)"),
)  # fmt: skip


def state_dir() -> Path:
    override = os.environ.get(variables.STATE_DIR)
    folder = Path(override) if override else project_root() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pipeline_dir(run_id: str) -> Path:
    return state_dir() / "pipeline" / run_id


def training_dir(state: Path) -> Path:
    return state / "training"


def serving_dir(environment: str) -> Path:
    return state_dir() / "serving" / environment


def model_serving_dir(environment: str, model: str) -> Path:
    """A model served beside training.model (`modelyard:models`): apart from the environment's
    own folder, whose live samples are training.model's."""
    return state_dir() / "serving-models" / environment / model


def promotion_dir() -> Path:
    return state_dir() / "promotion"


def reports_dir(state: Path) -> Path:
    return state / "reports"


def logs_dir() -> Path:
    return state_dir() / "logs"


def ansible_dir(environment: str) -> Path:
    return state_dir() / "ansible" / environment


def pulumi_state_dir() -> Path:
    return state_dir() / "pulumi-state"


def image_contexts_dir() -> Path:
    return state_dir() / "image-contexts"


def cluster_dir() -> Path:
    return state_dir() / "cluster"


def demo_dir() -> Path:
    """The demo's own state folder (it sets MODELYARD_STATE_DIR to this for what it runs), in
    the state folder like the cluster demo's: a demo run elsewhere leaves the checkout's alone."""
    return (state_dir() / "demo").resolve()
