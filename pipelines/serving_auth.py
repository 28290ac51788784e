"""The bearer token the kit's own callers (the smoke test, `modelyard score`-like scripts) send to
an environment's model server when `modelyard:serving.auth` is set."""

from __future__ import annotations

import os

from modelyard.contracts import variables
from modelyard.contracts.environment import Environment
from modelyard.pipelines.errors import PipelineError


def bearer_headers(environment: Environment) -> dict[str, str]:
    """`Authorization: Bearer ...` from SERVING_TOKEN when the environment asks for tokens;
    nothing when its serving is open."""
    if environment.serving.auth is None:
        return {}
    token = os.environ.get(variables.SERVING_TOKEN, "").strip()
    if not token:
        raise PipelineError(
            f"{environment.path}: modelyard:serving.auth is set, so {environment.name}'s model "
            f"server asks for a bearer token: set {variables.SERVING_TOKEN} to one of "
            f"modelyard:serving.auth.tokens (`pulumi config get --path "
            f"modelyard:serving.auth.tokens.pipeline --stack {environment.name}`; Jenkins binds "
            f"the credential modelyard-serving-token-{environment.name})"
        )
    return {"Authorization": f"Bearer {token}"}
