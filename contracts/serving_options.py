"""The one mapping from an environment's settings to the model server's options.

Every target gets the same variables from `server_variables`: a Kubernetes pod and a Docker
container as their environment, a local process through `ml/serving/__main__.py`, which reads
them back. Per-track values (the model URI, the image digest) are added by whoever knows the
track."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.contracts import variables

# The port the model server listens on in a container or a pod.
SERVING_PORT = 8080

if TYPE_CHECKING:
    from modelyard.contracts.environment import Environment


def server_variables(environment: Environment) -> dict[str, str]:
    rollout, monitoring = environment.promotion.rollout, environment.monitoring
    return {
        variables.ENVIRONMENT: environment.name,
        variables.ROLLOUT: rollout.strategy,
        variables.CANARY_STEPS: ",".join(str(step) for step in rollout.canary_steps),
        variables.CANARY_STEP_SECONDS: repr(monitoring.canary_step_seconds),
        variables.CANARY_MIN_REQUESTS: str(monitoring.canary_min_requests),
        variables.AB_SPLIT: str(rollout.ab_split),
        variables.MAX_ERROR_RATE: repr(rollout.max_error_rate),
        variables.MAX_LATENCY_P99_MS: repr(rollout.max_latency_p99_ms),
        variables.SAMPLE_RATE: repr(monitoring.sample_rate),
        variables.SAMPLE_MAX_ROWS: str(monitoring.sample_max_rows),
    }
