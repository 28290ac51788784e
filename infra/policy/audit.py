"""`modelyard infra policy ENV`: the policy rules over an environment's rendered desired state."""

from __future__ import annotations

from modelyard.infra.policy.rules import Resource, Violation, check
from modelyard.infra.render import RenderedState, render


def check_state(state: RenderedState) -> list[Violation]:
    return check([Resource(r.type, r.name, r.inputs) for r in state.resources if r.custom])


def check_environment(environment: str) -> list[Violation]:
    return check_state(render(environment))
