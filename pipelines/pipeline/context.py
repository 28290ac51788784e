"""What one pipeline run knows, kept in a file so each stage can be its own process (as in Jenkins)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard.contracts import variables
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.state import pipeline_dir


@dataclass
class PipelineContext:
    run_id: str
    env: str
    data: str
    model: str = ""
    git_commit: str = ""
    training_run_id: str | None = None
    version: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    package: dict[str, str] = field(default_factory=dict)
    serving: dict[str, str] = field(default_factory=dict)  # environment -> URL
    promoted: dict[str, bool] = field(default_factory=dict)  # environment -> promoted this run
    restarts: dict[str, int] = field(
        default_factory=dict
    )  # stage -> times the monitor restarted it
    approvers: list[str] = field(default_factory=list)  # given by Jenkins' input step
    notes: list[str] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> status, seconds

    @property
    def folder(self) -> Path:
        return pipeline_dir(self.run_id)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "context.json", json.dumps(asdict(self), indent=2))

    def use_model(self, model: str | None) -> None:
        """Train `model` in this run; None or "" leaves the run's own (training.model unless
        one was named). A run that already trains another model refuses."""
        if not model or self.model == model:
            return
        if self.model:
            from modelyard.pipelines.errors import PipelineError

            raise PipelineError(f"pipeline run {self.run_id} is training {self.model}, not {model}")
        self.model = model
        self.save()

    @classmethod
    def load_or_start(cls, run_id: str, env: str, data: str) -> PipelineContext:
        path = pipeline_dir(run_id) / "context.json"
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        context = cls(run_id=run_id, env=env, data=data)
        context.save()
        return context


def current_run_id() -> str | None:
    return os.environ.get(variables.PIPELINE_RUN_ID) or os.environ.get("BUILD_TAG")
