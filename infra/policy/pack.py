"""The rules as a pulumi-policy pack, every policy mandatory: a violation stops `pulumi up`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.infra.policy.rules import (
    RESOURCE_RULES,
    STACK_RULES,
    Resource,
    ResourceRule,
    StackRule,
)
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)


def _resource_policy(name: str, rule: ResourceRule, description: str) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in rule(args.resource_type, _plain(args.props)):
            report(message, args.urn)

    return ResourceValidationPolicy(name, description, validate, EnforcementLevel.MANDATORY)


def _stack_policy(name: str, rule: StackRule, description: str) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, _plain(r.props)) for r in args.resources]
        urns = {r.name: r.urn for r in args.resources}
        for resource_name, message in rule(resources):
            report(message, urns.get(resource_name))

    return StackValidationPolicy(name, description, validate, EnforcementLevel.MANDATORY)


def _plain(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in props.items()}


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    found: list[ResourceValidationPolicy | StackValidationPolicy] = [
        _resource_policy(n, r, d) for n, (r, d) in RESOURCE_RULES.items()
    ]
    found += [_stack_policy(n, r, d) for n, (r, d) in STACK_RULES.items()]
    return found


def serve() -> None:
    """Start the pack for the Pulumi engine (blocks: the engine talks to it over gRPC)."""
    PolicyPack(
        name="modelyard-serving",
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=list(policies()),
    )
