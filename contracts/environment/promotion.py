"""The rules a model version must pass to be served by an environment."""

from __future__ import annotations

from datetime import time
from typing import Any, Literal

from modelyard.contracts.environment.base import MetricRule, Section
from modelyard.contracts.strategies import Strategy
from modelyard.contracts.tasks import METRICS, TASKS, Task, rule_problem
from pydantic import Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Champion(Section):
    metric: str = Field(min_length=1)
    min_delta: float = Field(default=0.0, ge=0)
    # Unset: the direction of the task's metric (contracts/tasks.py: lower wins for log_loss,
    # rmse, mae). Set it for a metric the kit does not record itself.
    higher_is_better: bool | None = None

    def better_when_higher(self, task: Task) -> bool:
        if self.higher_is_better is not None:
            return self.higher_is_better
        return METRICS[task].get(self.metric, True)


class Approvals(Section):
    required: int = Field(default=0, ge=0, le=10)
    group: str | None = None
    members: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough_members(self) -> Approvals:
        if self.required and self.members and len(self.members) < self.required:
            raise ValueError(
                f"{self.required} approvals required but the group lists only "
                f"{len(self.members)} members: add members or lower `required`"
            )
        return self


class FreezeWindow(Section):
    days: list[Weekday] = Field(min_length=1)
    start: time
    end: time
    reason: str = ""


class Freeze(Section):
    enabled: bool = False
    reason: str = ""
    windows: list[FreezeWindow] = Field(default_factory=list)


class Rollout(Section):
    strategy: Strategy = "rolling"
    canary_steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    ab_split: int = Field(default=50, ge=1, le=99)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_latency_p99_ms: float = Field(default=100.0, gt=0)

    @model_validator(mode="after")
    def _steps_climb_to_100(self) -> Rollout:
        steps = self.canary_steps
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
            raise ValueError(
                "canarySteps must be increasing percentages ending at 100, e.g. [10, 50, 100]"
            )
        return self


class GitSettings(Section):
    """Where promotions land in git (`modelyard:promotion.git`): every write of release keys
    (promote, rollback, repair, canary step, automatic rollback) is a commit pushed to `branch` of
    `remote`, so the files in the repository are what the environment serves."""

    enabled: bool = False
    # A remote of the checkout (`origin`) or a URL; credentials come from git's own configuration
    # (an SSH key or credential helper), never from this file.
    remote: str = Field(default="origin", min_length=1)
    branch: str = Field(default="main", min_length=1, pattern=r"^[A-Za-z0-9._/-]+$")
    author_name: str = Field(default="modelyard", min_length=1)
    author_email: str = Field(default="modelyard@localhost", pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    # A push refused because the branch moved is retried after a fetch, this many times.
    push_retries: int = Field(default=3, ge=0, le=10)
    # An SSH remote's host key, as `ssh-keyscan HOST` prints it (`HOST TYPE KEY`): pinned, so an
    # agent that never met the server pushes without trusting it on first use. Unset: the
    # known_hosts of whoever runs the command.
    host_key: str | None = Field(
        default=None, pattern=r"^\S+ (ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa) [A-Za-z0-9+/=]+$"
    )


# What `modelyard:models.NAME.promotion` may set for that model alone. Where versions come from
# (source, trainedFor) and how a deploy rolls out are the environment's, shared by its models.
PER_MODEL_RULES = ("gates", "champion", "max_drift", "soak_minutes", "approvals", "freeze")


class PromotionSettings(Section):
    # "registered": candidates the pipeline registered; otherwise the environment it takes from.
    source: str = Field(default="registered", min_length=1)
    # With source `registered`: versions trained for these environments are candidates too
    # (e.g. [local] lets the demo's locally trained model into staging); default: only its own.
    trained_for: list[str] = Field(default_factory=list)
    # What a version must show to be served here, checked at promotion on the metrics its run
    # recorded. training.gate is where tuning stops: a promotion gate on the same metric set
    # higher than it lets training register versions this environment will refuse.
    # One list for every task, or one per task: {binary: [roc_auc >= 0.8], regression: [...]}.
    gates: list[MetricRule] | dict[Task, list[MetricRule]] = Field(default_factory=list)
    champion: Champion | dict[Task, Champion] | None = None
    max_drift: float | None = Field(default=None, gt=0)
    soak_minutes: float = Field(default=0.0, ge=0)
    approvals: Approvals = Approvals()
    freeze: Freeze = Freeze()
    rollout: Rollout = Rollout()
    git: GitSettings = GitSettings()

    @field_validator("gates", "champion", mode="before")
    @classmethod
    def _per_task_rules_fit_their_task(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not set(value) <= set(TASKS):
            return value  # one rule for every task, or pydantic names the unknown task
        for task, rules in value.items():
            for text in rules if isinstance(rules, list) else []:
                rule = MetricRule.parse(text) if isinstance(text, str) else None
                problem = rule and rule_problem(task, rule.metric, rule.higher_is_better)
                if problem:
                    raise ValueError(f"{task}: `{rule}`: {problem}")
            if isinstance(rules, dict) and rules.get("metric") not in (None, *METRICS[task]):
                raise ValueError(
                    f"{task}: champion metric {rules['metric']!r}: {task} models have "
                    f"{', '.join(METRICS[task])}"
                )
        return value

    def overridden_by(self, own: PromotionSettings | None) -> PromotionSettings:
        """These rules with the ones a model sets for itself in their place."""
        if own is None:
            return self
        return self.model_copy(update={name: getattr(own, name) for name in own.model_fields_set})

    def gates_for(self, task: Task) -> list[MetricRule]:
        return self.gates.get(task, []) if isinstance(self.gates, dict) else self.gates

    def champion_for(self, task: Task) -> Champion | None:
        return self.champion.get(task) if isinstance(self.champion, dict) else self.champion
