"""How the pipeline runs for an environment (pipelines/Jenkinsfile and `modelyard pipeline run`)."""

from __future__ import annotations

from pydantic import Field

from infra.config.base import Section


class PipelineSettings(Section):
    # The unit-test stage: test paths run with `-m "not slow and not docker"`.
    test_paths: list[str] = Field(default_factory=lambda: ["tests/config"])
    # Who the local runner records as approving production (Jenkins asks with an `input` step).
    approvers: list[str] = Field(default_factory=list)
    # The monitor: how often a killed training or serving process is started again.
    max_restarts: int = Field(default=2, ge=0, le=10)
    smoke_requests: int = Field(default=50, ge=1, le=10_000)
