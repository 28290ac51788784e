"""The serving policy: each rule with a passing and a violating input, the pack, the command."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from modelyard.infra.policy import rules
from modelyard.infra.policy.audit import check_environment
from modelyard.infra.policy.pack import policies
from modelyard.infra.policy.rules import DEPLOYMENT, DOCKER_CONTAINER, Resource
from modelyard.infra.render import render
from modelyard.pipelines.cli import app
from modelyard.pipelines.errors import PipelineError
from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from test_render_support import edit_environment
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def production() -> list[Resource]:
    return [Resource(r.type, r.name, r.inputs) for r in render("production").resources if r.custom]


@pytest.fixture(scope="module")
def local_container() -> dict[str, Any]:
    return render("local").by_name()["local-serving-server"].inputs


def _deployment(resources: list[Resource]) -> dict[str, Any]:
    return copy.deepcopy(next(r.props for r in resources if r.type == DEPLOYMENT))


def _server(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_pinned_images(production: list[Resource]) -> None:
    good = _deployment(production)
    assert rules.pinned_images(DEPLOYMENT, good) == []
    bad = copy.deepcopy(good)
    _server(bad)["image"] = "registry.example.internal/modelyard-serving:latest"
    assert rules.pinned_images(DEPLOYMENT, bad) == [
        "container 'server' image 'registry.example.internal/modelyard-serving:latest' "
        "is not pinned by @sha256 digest"
    ]


def test_non_root(production: list[Resource], local_container: dict[str, Any]) -> None:
    good = _deployment(production)
    assert rules.non_root(DEPLOYMENT, good) == []
    bad = copy.deepcopy(good)
    del bad["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    del _server(bad)["securityContext"]["runAsNonRoot"]
    _server(bad)["securityContext"]["allowPrivilegeEscalation"] = True
    assert len(rules.non_root(DEPLOYMENT, bad)) == 2
    assert rules.non_root(DOCKER_CONTAINER, local_container) == []
    assert rules.non_root(DOCKER_CONTAINER, {**local_container, "user": "0"}) == [
        "container runs as root: set `user`"
    ]


def test_probes(production: list[Resource], local_container: dict[str, Any]) -> None:
    good = _deployment(production)
    assert rules.probes(DEPLOYMENT, good) == []
    bad = copy.deepcopy(good)
    del _server(bad)["livenessProbe"]
    assert rules.probes(DEPLOYMENT, bad) == ["container 'server' has no livenessProbe"]
    assert rules.probes(DOCKER_CONTAINER, local_container) == []
    no_check = {k: v for k, v in local_container.items() if k != "healthcheck"}
    assert rules.probes(DOCKER_CONTAINER, no_check) == ["container has no healthcheck"]


def test_resource_limits(production: list[Resource], local_container: dict[str, Any]) -> None:
    good = _deployment(production)
    assert rules.resource_limits(DEPLOYMENT, good) == []
    bad = copy.deepcopy(good)
    del _server(bad)["resources"]["limits"]["memory"]
    assert rules.resource_limits(DEPLOYMENT, bad) == ["container 'server' has no limits.memory"]
    assert rules.resource_limits(DOCKER_CONTAINER, local_container) == []
    unbounded = {k: v for k, v in local_container.items() if k != "memory_mb"}
    assert rules.resource_limits(DOCKER_CONTAINER, unbounded) == ["container has no memory limit"]


def test_no_plain_secrets(production: list[Resource], local_container: dict[str, Any]) -> None:
    provider = {"kubeconfig": "[secret]", "namespace": "modelyard-production"}
    assert rules.no_plain_secrets("pulumi:providers:kubernetes", provider) == []
    assert rules.no_plain_secrets(DEPLOYMENT, _deployment(production)) == []
    assert rules.no_plain_secrets(DOCKER_CONTAINER, local_container) == []
    leaked = {**provider, "kubeconfig": "apiVersion: v1\nclusters: ..."}
    assert rules.no_plain_secrets("pulumi:providers:kubernetes", leaked) == [
        "kubeconfig holds a plain-text secret: make it a Pulumi secret"
    ]
    bad = _deployment(production)
    _server(bad)["env"].append({"name": "MLFLOW_TRACKING_PASSWORD", "value": "hunter2"})
    assert len(rules.no_plain_secrets(DEPLOYMENT, bad)) == 1
    docker_env = {**local_container, "envs": ["API_TOKEN=abc123"]}
    assert len(rules.no_plain_secrets(DOCKER_CONTAINER, docker_env)) == 1
    secret_object = {"data": {"password": "aHVudGVyMg=="}}
    assert len(rules.no_plain_secrets("kubernetes:core/v1:Secret", secret_object)) == 1
    assert rules.no_plain_secrets("kubernetes:core/v1:Secret", {"data": "[secret]"}) == []
    # A switch naming secrets holds none (the provider's enableSecretMutable).
    assert (
        rules.no_plain_secrets("pulumi:providers:kubernetes", {"enableSecretMutable": True}) == []
    )
    # A volume naming a Secret holds no secret itself.
    assert rules.no_plain_secrets(DEPLOYMENT, {"volume": {"secretName": "tls"}}) == []


def test_production_replicas(production: list[Resource]) -> None:
    assert rules.production_replicas(production) == []
    single = [
        Resource(r.type, r.name, _with_replicas(r, 1))
        if "Deployment" in r.type or "Horizontal" in r.type
        else r
        for r in production
    ]
    (problem,) = rules.production_replicas(single)
    assert problem == (
        "production-serving-server",
        "runs 1 replica(s) in production; at least 2 are required",
    )


def _with_replicas(resource: Resource, count: int) -> dict[str, Any]:
    props = copy.deepcopy(resource.props)
    key = "minReplicas" if "Horizontal" in resource.type else "replicas"
    props["spec"][key] = count
    return props


def test_pdb_present(production: list[Resource]) -> None:
    assert rules.pdb_present(production) == []
    without = [r for r in production if "PodDisruptionBudget" not in r.type]
    assert rules.pdb_present(without) == [
        ("production-serving-server", "no PodDisruptionBudget selects its pods")
    ]


def test_default_deny_present(production: list[Resource]) -> None:
    assert rules.default_deny_present(production) == []
    without = [r for r in production if r.name != "production-cluster-default-deny"]
    assert rules.default_deny_present(without) == [
        (
            "production-serving-server",
            "namespace 'modelyard-production' has no default-deny NetworkPolicy",
        )
    ]


def test_every_policy_in_the_pack_is_mandatory_and_runs_its_rule(
    production: list[Resource],
) -> None:
    pack = {p.name: p for p in policies()}
    assert set(pack) == set(rules.RESOURCE_RULES) | set(rules.STACK_RULES)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in pack.values())

    reported: list[tuple[str, str | None]] = []
    pinned = pack["pinned-images"]
    assert isinstance(pinned, ResourceValidationPolicy)
    bad = _deployment(production)
    _server(bad)["image"] = "nginx"
    args = ResourceValidationArgs(DEPLOYMENT, bad, "urn:d", "d", None, None)  # type: ignore[arg-type]
    pinned.validate(args, lambda message, urn=None: reported.append((message, urn)))  # type: ignore[operator, misc]
    assert reported == [
        ("container 'server' image 'nginx' is not pinned by @sha256 digest", "urn:d")
    ]

    reported.clear()
    pdb = pack["pdb-present"]
    assert isinstance(pdb, StackValidationPolicy)
    stack = [_policy_resource(r) for r in production if "PodDisruptionBudget" not in r.type]
    pdb.validate(
        StackValidationArgs(stack), lambda message, urn=None: reported.append((message, urn))
    )  # type: ignore[operator, misc]
    assert reported == [
        ("no PodDisruptionBudget selects its pods", "urn:production-serving-server")
    ]


def _policy_resource(resource: Resource) -> Any:
    from pulumi_policy import PolicyResource

    return PolicyResource(
        resource.type,
        resource.props,
        f"urn:{resource.name}",
        resource.name,
        None,
        None,
        None,
        [],
        {},  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_every_environment_passes_the_policy(env: str) -> None:
    assert check_environment(env) == []


def test_policy_command_names_each_violation_and_fails(environments: Path) -> None:
    edit_environment(
        environments, "production", serving={"replicas": 1, "autoscaling": {"maxReplicas": 1}}
    )
    result = CliRunner().invoke(app, ["infra", "policy", "production"])
    assert "[production-replicas] production-serving-server: runs 1 replica(s)" in result.output
    assert isinstance(result.exception, PipelineError)
    assert "1 policy violation(s)" in str(result.exception)
    passing = CliRunner().invoke(app, ["infra", "policy", "staging"])
    assert passing.exit_code == 0
    assert "staging: every policy passes" in passing.output
