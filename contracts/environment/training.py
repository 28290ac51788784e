"""How an environment trains: which model, the gate it must pass and the tuning budget."""

from __future__ import annotations

from typing import Any

from modelyard.contracts.environment.base import MetricRule, Section
from modelyard.contracts.environment.serving import Quantities, Resources
from modelyard.contracts.tasks import TASKS, Task, rule_problem
from pydantic import Field, field_validator


class Budget(Section):
    trials: int = Field(default=20, ge=1, le=1000)
    minutes: float = Field(default=15.0, gt=0, le=24 * 60)


class OnKubernetes(Section):
    """How the train stage runs as a Job when modelyard:pipeline.trainIn is `kubernetes`."""

    resources: Resources = Resources(
        requests=Quantities(cpu="1", memory="1Gi"), limits=Quantities(cpu="2", memory="4Gi")
    )
    # The volume the Job's state lives on (checkpoints, the staged data): it outlives the pod, so
    # a replaced pod resumes. Unset storageClass: the cluster's default class.
    storage: str = Field(default="4Gi", pattern=r"^[0-9]+(Mi|Gi|Ti)$")
    storage_class: str | None = None
    # How long the stage waits for the pod to be scheduled before it gives up and says why.
    schedule_timeout_seconds: int = Field(default=120, ge=10, le=3600)
    # Pods that train one model together over LightGBM's data-parallel network, each boosting on
    # its share of the training rows (ml/training/distributed.py); `resources` are per pod. It
    # changes the model (bins and histograms are merged across pods): part of a job's key.
    workers: int = Field(default=1, ge=1, le=16)
    # A worker that finishes no boosting round for this long ends its pod, which the Job replaces
    # (ml/training/distributed.py, StallWatch): LightGBM's network never notices a lost peer.
    stall_timeout_seconds: int = Field(default=600, ge=10, le=24 * 3600)


class TrainingSettings(Section):
    model: str = Field(min_length=1, description="model folder under ml/models/")
    # The bar tuning works towards: a candidate below it is never registered. What this
    # environment will serve is decided by promotion.gates (promotion.py). One rule for every
    # task that has its metric, or one per task: {binary: roc_auc >= 0.8, regression: ...}.
    gate: MetricRule | dict[Task, MetricRule]
    budget: Budget = Budget()
    num_boost_round: int = Field(default=200, ge=1, le=100_000)
    early_stopping_rounds: int | None = Field(default=30, ge=1)
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    checkpoint_every: int = Field(default=10, ge=1)
    seed: int = 42
    # Where the Job runs, not what it trains: not part of a job's key (ml/training/run.py).
    kubernetes: OnKubernetes = OnKubernetes()

    @field_validator("gate", mode="before")
    @classmethod
    def _gate_per_task_fits_its_task(cls, gate: Any) -> Any:
        if isinstance(gate, dict):
            for task, text in gate.items():
                if task not in TASKS or not isinstance(text, str):
                    continue  # pydantic names the unknown task or the wrong type
                rule = MetricRule.parse(text)
                problem = rule_problem(task, rule.metric, rule.higher_is_better)
                if problem:
                    raise ValueError(f"{task}: `{rule}`: {problem}")
        return gate

    def gate_for(self, task: Task) -> MetricRule:
        """The gate a `task` model trains to; ValueError says what to write when there is none."""
        rule = self.gate.get(task) if isinstance(self.gate, dict) else self.gate
        if rule is None:
            raise ValueError(
                f"no gate for {task} models: add one under training.gate, "
                f"e.g. `{task}: {_EXAMPLE[task]}`"
            )
        problem = rule_problem(task, rule.metric, rule.higher_is_better)
        if problem:
            raise ValueError(
                f"`{rule}` cannot judge a {task} model ({problem}); write the gate per task, "
                f"e.g. `gate: {{binary: roc_auc >= 0.8, {task}: {_EXAMPLE[task]}}}`"
            )
        return rule


_EXAMPLE: dict[Task, str] = {
    "binary": "roc_auc >= 0.8",
    "multiclass": "macro_f1 >= 0.6",
    "regression": "r2 >= 0.5",
}
