"""The tag schema of MLflow runs and model versions: every `modelyard.*` key the kit writes or
reads, named here once. Writers build a record and call `to_tags`; readers call `from_tags`.

What a training run carries: its `Lineage` and, once complete, its `Gate` and the run-only
keys below. Registering copies every `modelyard.*` tag but the run-only ones onto the version
(`version_tags`); the package stage adds `PACKAGE_DIGEST` and the pushed `ServingImage`, which
promotion writes to the environment file `pulumi up` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "modelyard."
# Promotion records are kept as tags under this prefix (pipelines/promotion/records.py).
PROMOTION_PREFIX = PREFIX + "promotion."

# On a training job's run: what was trained and how the job went.
JOB = PREFIX + "job"  # the job's id, kept in its state folder
TRIALS = PREFIX + "trials"
RESUMES = PREFIX + "resumes"
MODEL_URI = PREFIX + "model_uri"  # the logged model the job delivers (models:/m-...)
MODEL_ID = PREFIX + "model_id"
MONITOR_RESTARTS = PREFIX + "monitor.restarts"  # restarts of a crashed training by the monitor
# On a trial's nested run.
TRIAL = PREFIX + "trial"  # its number
TRIAL_KEY = PREFIX + "trial.key"  # a digest of its parameters
RESUMED = PREFIX + "resumed"
# What the model predicts; copied onto the version (the server and the drift check read them).
CLASSES = PREFIX + "classes"
TARGET = PREFIX + "target"
TASK = PREFIX + "task"  # binary, multiclass or regression (contracts/tasks.py)
# On a model version: the digest of the artifact the package stage downloaded.
PACKAGE_DIGEST = PREFIX + "package.digest"


def rollout_tag(environment: str) -> str:
    """On a model version: what the environment's server did with it (an automatic rollback)."""
    return f"{PREFIX}rollout.{environment}"


def lease_tag(environment: str) -> str:
    """On a registered model: the promotion lease that serialises promotions to an environment."""
    return f"{PREFIX}lease.{environment}"


# Tags that describe the training run itself, not the model version registered from it.
RUN_ONLY = frozenset({JOB, TRIALS, RESUMES, MODEL_URI, MODEL_ID, MONITOR_RESTARTS})


@dataclass(frozen=True)
class Lineage:
    """Where a model came from; on the training run and every version registered from it."""

    environment: str
    git_commit: str
    pipeline_run_id: str
    dataset_digest: str
    dataset_path: str
    reason: str = ""  # why the pipeline run started (a drift check names its report)

    ENVIRONMENT = PREFIX + "environment"
    GIT_COMMIT = PREFIX + "git.commit"
    PIPELINE_RUN_ID = PREFIX + "pipeline.run_id"
    DATASET_DIGEST = PREFIX + "dataset.digest"
    DATASET_PATH = PREFIX + "dataset.path"
    REASON = PREFIX + "pipeline.reason"

    def to_tags(self) -> dict[str, str]:
        return {
            self.ENVIRONMENT: self.environment,
            self.GIT_COMMIT: self.git_commit,
            self.PIPELINE_RUN_ID: self.pipeline_run_id,
            self.DATASET_DIGEST: self.dataset_digest,
            self.DATASET_PATH: self.dataset_path,
            **({self.REASON: self.reason} if self.reason else {}),
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Lineage:
        """Missing keys read as "" (a version registered by hand has no lineage)."""
        return cls(
            environment=tags.get(cls.ENVIRONMENT, ""),
            git_commit=tags.get(cls.GIT_COMMIT, ""),
            pipeline_run_id=tags.get(cls.PIPELINE_RUN_ID, ""),
            dataset_digest=tags.get(cls.DATASET_DIGEST, ""),
            dataset_path=tags.get(cls.DATASET_PATH, ""),
            reason=tags.get(cls.REASON, ""),
        )


@dataclass(frozen=True)
class Gate:
    """The training gate's rule (e.g. `roc_auc >= 0.85`), the value reached and the verdict."""

    rule: str
    value: str
    passed: bool

    RULE = PREFIX + "gate.rule"
    VALUE = PREFIX + "gate.value"
    PASSED = PREFIX + "gate.passed"

    def to_tags(self) -> dict[str, str]:
        return {self.RULE: self.rule, self.VALUE: self.value, self.PASSED: str(self.passed).lower()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Gate:
        return cls(
            rule=tags.get(cls.RULE, ""),
            value=tags.get(cls.VALUE, ""),
            passed=tags.get(cls.PASSED, "").lower() == "true",
        )


@dataclass(frozen=True)
class ServingImage:
    """The serving image the package stage pushed for a version: `ref` is REPO:TAG@sha256:...,
    pinned the way the environment files pin images; `digest` is what the registry returned."""

    ref: str
    digest: str

    REF = PREFIX + "image.ref"
    DIGEST = PREFIX + "image.digest"

    def to_tags(self) -> dict[str, str]:
        return {self.REF: self.ref, self.DIGEST: self.digest}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ServingImage | None:
        if not tags.get(cls.REF):
            return None
        return cls(ref=tags[cls.REF], digest=tags.get(cls.DIGEST, ""))


def version_tags(run_tags: Mapping[str, str]) -> dict[str, str]:
    """The tags a version registered from a training run carries: its `modelyard.*` tags but
    the run-only ones."""
    return {k: v for k, v in run_tags.items() if k.startswith(PREFIX) and k not in RUN_ONLY}
