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
# Where a container or a pod finds the bearer tokens (modelyard:serving.auth; ml/serving/auth.py).
AUTH_MOUNT = "/etc/modelyard/auth"
# On Kubernetes the tokens are the Secret named after the model's Service with this suffix.
AUTH_SECRET_SUFFIX = "-auth"

if TYPE_CHECKING:
    from modelyard.contracts.environment import Environment


def auth_files(environment: Environment) -> dict[str, tuple[str, ...]]:
    """The token folder's files, each with the path of its secret under modelyard:serving
    (none when the environment's serving is open)."""
    auth = environment.serving.auth
    if auth is None:
        return {}
    files = {variables.AUTH_SCORING_PREFIX + name: ("auth", "tokens", name) for name in auth.tokens}
    return {**files, variables.AUTH_METRICS_FILE: ("auth", "metricsToken")}


def server_variables(environment: Environment) -> dict[str, str]:
    rollout, monitoring = environment.promotion.rollout, environment.monitoring
    auth = {variables.AUTH_DIR: AUTH_MOUNT} if environment.serving.auth is not None else {}
    return {
        **auth,
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
        variables.COMPILE_MODELS: str(environment.serving.compile_models).lower(),
    }
