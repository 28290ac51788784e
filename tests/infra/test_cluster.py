"""Cluster: the namespace every Kubernetes serving environment runs in, rendered offline."""

from __future__ import annotations

import pytest
from modelyard.infra.components.cluster import DEPLOYER_RULES, ClusterArgs, Quota
from modelyard.infra.render import RenderedState, render
from test_render_support import one


@pytest.fixture(scope="module", params=["staging", "production"])
def state(request: pytest.FixtureRequest) -> RenderedState:
    return render(request.param)


def test_namespace_enforces_pod_security_restricted(state: RenderedState) -> None:
    labels = one(state, "core/v1:Namespace").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["modelyard.io/environment"] == state.environment


def test_everything_is_namespaced_in_the_environments_namespace(state: RenderedState) -> None:
    namespace = one(state, "core/v1:Namespace").inputs["metadata"]["name"]
    assert namespace == f"modelyard-{state.environment}"
    for manifest in state.manifests():
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace, manifest["kind"]


def test_default_deny_covers_both_directions_and_only_serving_flows_are_allowed(
    state: RenderedState,
) -> None:
    policies = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in state.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    deny = policies.pop("default-deny-all")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert set(policies) == {"allow-serving-ingress", "allow-dns-egress", "allow-model-egress"}
    ingress = policies["allow-serving-ingress"]["ingress"]
    assert ingress[0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert ingress[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    model = policies["allow-model-egress"]["egress"][0]
    assert model["ports"] == [{"protocol": "TCP", "port": 443}]
    for spec in policies.values():
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "modelyard-serving"


def test_quota_and_limit_range_follow_the_environment_file(state: RenderedState) -> None:
    quota = one(state, "ResourceQuota").inputs["spec"]["hard"]
    limits = one(state, "LimitRange").inputs["spec"]["limits"][0]
    if state.environment == "production":
        # 10 max replicas x 2 (surge / standby) + 1 = 21 pods of at most 2 CPUs and 2Gi.
        assert quota["pods"] == "21"
        assert quota["limits.cpu"] == "42000m"
        assert quota["limits.memory"] == "43008Mi"
        assert limits["default"] == {"cpu": "2", "memory": "2Gi"}
        assert limits["defaultRequest"] == {"cpu": "500m", "memory": "1Gi"}
    assert quota["services.loadbalancers"] == "0"
    assert quota["services.nodeports"] == "0"


def test_deployer_role_is_least_privilege(state: RenderedState) -> None:
    rules = one(state, "v1:Role").inputs["rules"]
    assert rules, "the deployer needs some rights"
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "secrets" not in rule["resources"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    deploy_rights = next(r for r in rules if r["resources"] == ["deployments"])
    assert "patch" in deploy_rights["verbs"]
    binding = one(state, "RoleBinding").inputs
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "modelyard-deployer",
    }
    assert binding["subjects"][0]["name"] == "modelyard-deployer"


def test_no_service_account_mounts_a_token(state: RenderedState) -> None:
    accounts = state.of_type("kubernetes:core/v1:ServiceAccount")
    assert {a.inputs["metadata"]["name"] for a in accounts} == {
        "modelyard-deployer",
        "modelyard-serving",
    }
    assert all(a.inputs["automountServiceAccountToken"] is False for a in accounts)


def test_cluster_children_are_parented_to_the_component(state: RenderedState) -> None:
    component = one(state, "modelyard:cluster:Cluster")
    assert component.parent is None
    children = [r for r in state.resources if r.parent == component.name]
    assert len(children) == 11  # namespace, 4 network policies, quota, limits, 2 SAs, role, binding
    assert all(r.name.startswith(f"{component.name}-") for r in children)


def test_deployer_rules_grant_no_wildcards_at_the_source() -> None:
    assert all("*" not in v for rule in DEPLOYER_RULES for v in rule.values())


def test_bad_args_are_refused_before_any_resource_is_created() -> None:
    args = ClusterArgs(
        namespace="x",
        environment="x",
        quota=Quota("1", "1Gi", "1", "1Gi", pods=0),
        default_requests={},
        default_limits={},
        serving_selector={"app": "x"},
        serving_port=8080,
    )
    with pytest.raises(ValueError, match=r"quota\.pods"):
        args.validate()
    with pytest.raises(ValueError, match="egress_ports"):
        ClusterArgs(**{**args.__dict__, "egress_cidrs": ["0.0.0.0/0"]}).validate()
