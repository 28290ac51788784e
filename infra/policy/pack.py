"""The rules as a pulumi-policy pack, every policy mandatory: a violation stops `pulumi up`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.infra.policy.rules import (
    RESOURCE_RULES,
    SECRETS_RULE,
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
from pulumi_policy.proxy import UnknownValueError

# Resource types whose secrets the policy runtime cannot see as secrets under the real engine.
_SECRET_BY_CHECK = ("pulumi:providers:", "kubernetes:core/v1:Secret")


def _resource_policy(name: str, rule: ResourceRule, description: str) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if name == SECRETS_RULE and args.resource_type.startswith(_SECRET_BY_CHECK):
            # The engine hands these to policies as their provider's Check returned them, secret
            # marks dropped, while the provider keeps them secret in the state (a provider's own
            # configuration; a Kubernetes Secret's data, which pulumi-kubernetes always marks
            # secret): tests/cluster checks the state. `infra render` still applies the rule.
            return
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
    """The props as plain data; during a preview, values not known yet are left out (the
    engine's proxy raises on reading them), so the rules judge what is known."""
    plain: dict[str, Any] = {}
    for key in props:
        try:
            plain[key] = _plain_value(props[key])
        except UnknownValueError:
            continue
    return plain


def _plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _plain(value)
    if isinstance(value, Sequence) and not isinstance(
        value, str | bytes
    ):  # incl. the proxy's lists
        items = []
        for index in range(len(value)):
            try:
                items.append(_plain_value(value[index]))
            except UnknownValueError:
                continue
        return items
    return value


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
