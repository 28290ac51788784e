"""ModelServing on Kubernetes: every rollout strategy, and serving before any model exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError
from modelyard.infra.components.model_serving import ModelServingArgs, Release
from modelyard.infra.providers.resource_types import CONTAINER, IMAGE, VOLUME
from modelyard.infra.render import RenderedState, render
from test_render_support import (
    PASSWORD,
    container,
    deployments,
    edit_environment,
    env_vars,
    one,
    pinned,
    render_with_mlflow_credentials,
)


def _promote(environments: Path, env: str, strategy: str, **serving: object) -> RenderedState:
    edit_environment(
        environments, env, promotion={"rollout": {"strategy": strategy}}, serving=serving
    )
    return render(env)


def test_before_any_model_the_bootstrap_server_runs_and_the_update_does_not_wait(
    environments: Path,
) -> None:
    state = render("staging")
    (deployment,) = deployments(state).values()
    assert container(deployment)["image"].startswith(
        "registry.staging.example.internal/modelyard-serving:0.1.0@sha256:"
    )
    assert env_vars(deployment)["MODELYARD_MODEL_URI"] == ""
    # Not-ready pods must not fail `pulumi up`: the provider's readiness wait is skipped.
    assert deployment["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["modelyard.io/model-version"] == "none"
    )


def test_promoted_version_is_served_with_the_written_image(environments: Path) -> None:
    image = pinned("staging", "v7")
    state = _promote(environments, "staging", "rolling", desiredVersion=7, image=image)
    (deployment,) = deployments(state).values()
    assert container(deployment)["image"] == image
    assert env_vars(deployment)["MODELYARD_MODEL_URI"] == "models:/churn/7"
    assert env_vars(deployment)["MLFLOW_TRACKING_URI"] == "https://mlflow.staging.example.internal"
    assert env_vars(deployment)["MODELYARD_IMAGE_DIGEST"] == "sha256:" + image.split(":")[-1]
    # With a model the update waits for readiness like any other rollout.
    assert "pulumi.com/skipAwait" not in deployment["metadata"]["annotations"]


def test_container_is_hardened_probed_and_sized_from_the_environment_file() -> None:
    (deployment,) = deployments(render("production")).values()
    pod = deployment["spec"]["template"]["spec"]
    server = container(deployment)
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # Liveness must not fail before a model exists: /version answers 200 once the workers
    # listen, and a slow first download has minutes before liveness counts at all.
    assert server["livenessProbe"]["httpGet"] == {"path": "/version", "port": "http"}
    startup = server["startupProbe"]
    assert startup["httpGet"] == {"path": "/version", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert "initialDelaySeconds" not in server["livenessProbe"]
    assert server["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    ctx = server["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "modelyard-serving"
    assert pod["securityContext"]["runAsUser"] == 10001
    assert "@sha256:" in server["image"]


def test_recreate_stops_old_pods_first(environments: Path) -> None:
    state = _promote(
        environments, "staging", "recreate", desiredVersion=2, image=pinned("staging", "v2")
    )
    (deployment,) = deployments(state).values()
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_rolling_never_drops_capacity(environments: Path) -> None:
    state = _promote(
        environments, "staging", "rolling", desiredVersion=2, image=pinned("staging", "v2")
    )
    (deployment,) = deployments(state).values()
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    service = one(state, "core/v1:Service").inputs["spec"]
    assert service["selector"]["modelyard.io/track"] == "server"


def test_each_deployments_replicas_spread_across_nodes_tolerate_a_lost_node_briefly_and_keep_a_disruption_budget(
    environments: Path,
) -> None:
    state = _promote(
        environments, "production", "rolling", desiredVersion=2, image=pinned("production", "v2")
    )
    (deployment,) = deployments(state).values()
    template = deployment["spec"]["template"]
    [spread] = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    # The spread counts exactly this Deployment's pods: its own selector.
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # one node still runs every replica
    budget = one(state, "policy/v1:PodDisruptionBudget").inputs["spec"]
    assert budget["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    # A lost node's pods are replaced elsewhere after 30 s, not Kubernetes' default 300 s.
    tolerated = {(t["key"], t["effect"], t["tolerationSeconds"])
                 for t in template["spec"]["tolerations"]}  # fmt: skip
    assert tolerated == {("node.kubernetes.io/not-ready", "NoExecute", 30),
                         ("node.kubernetes.io/unreachable", "NoExecute", 30)}  # fmt: skip


def test_blue_green_keeps_the_stable_version_warm_and_switches_the_service(
    environments: Path,
) -> None:
    state = _promote(
        environments,
        "staging",
        "blue-green",
        desiredVersion=5,
        image=pinned("staging", "v5"),
        stableVersion=4,
        stableImage=pinned("staging", "v4"),
    )
    found = deployments(state)
    assert set(found) == {"staging-serving-v5", "staging-serving-v4"}
    assert env_vars(found["staging-serving-v5"])["MODELYARD_MODEL_URI"] == "models:/churn/5"
    assert env_vars(found["staging-serving-v4"])["MODELYARD_MODEL_URI"] == "models:/churn/4"
    service = one(state, "core/v1:Service").inputs["spec"]
    assert service["selector"]["modelyard.io/track"] == "v5"
    hpa = one(state, "HorizontalPodAutoscaler").inputs["spec"]
    assert hpa["scaleTargetRef"]["name"] == "staging-serving-v5"
    # Rolling back is the same file with the versions swapped: only the selector moves.
    rolled_back = _promote(
        environments,
        "staging",
        "blue-green",
        desiredVersion=4,
        image=pinned("staging", "v4"),
        stableVersion=5,
        stableImage=pinned("staging", "v5"),
    )
    assert deployments(rolled_back) == found
    assert (
        one(rolled_back, "core/v1:Service").inputs["spec"]["selector"]["modelyard.io/track"] == "v4"
    )


def test_canary_pods_load_both_versions_and_split_requests_by_the_weight(
    environments: Path,
) -> None:
    state = _promote(
        environments,
        "production",
        "canary",
        desiredVersion=9,
        image=pinned("production", "v9"),
        stableVersion=8,
        stableImage=pinned("production", "v8"),
        canaryWeight=10,
        replicas=4,
    )
    (pods,) = deployments(state).values()
    assert pods["spec"]["replicas"] == 4  # the weight is per request: every pod takes both
    variables = env_vars(pods)
    assert variables["MODELYARD_MODEL_URI"] == "models:/churn/8"
    assert variables["MODELYARD_CANDIDATE_URI"] == "models:/churn/9"
    # The weight is a mounted ConfigMap the server re-reads, not part of the pods' template.
    assert "MODELYARD_CANDIDATE_WEIGHT" not in variables
    weight_file = variables["MODELYARD_CANDIDATE_WEIGHT_FILE"]
    assert weight_file == "/etc/modelyard/rollout/candidateWeight"
    assert {"name": "weight", "mountPath": "/etc/modelyard/rollout", "readOnly": True} in (
        container(pods)["volumeMounts"]
    )
    assert {"name": "weight", "configMap": {"name": "production-serving-server-weight"}} in (
        pods["spec"]["template"]["spec"]["volumes"]
    )
    assert _weights(state) == {"production-serving-server-weight": "10"}
    assert pods["spec"]["template"]["spec"]["containers"][0]["image"] == pinned("production", "v9")
    labels = pods["spec"]["template"]["metadata"]["labels"]
    assert (labels["modelyard.io/model-version"], labels["modelyard.io/candidate-version"]) == (
        "v8",
        "v9",
    )

    # Each step up to 100% changes the ConfigMap only: the pods keep running.
    for step in (50, 100):
        stepped = _promote(environments, "production", "canary", canaryWeight=step)
        assert deployments(stepped) == deployments(state)
        assert _weights(stepped) == {"production-serving-server-weight": str(step)}

    # Once 100% held, the deploy clears the stable version: the pods serve the candidate alone.
    done = _promote(environments, "production", "canary", stableVersion=None, stableImage=None)
    assert _weights(done) == {}
    (only,) = deployments(done).values()
    assert env_vars(only)["MODELYARD_MODEL_URI"] == "models:/churn/9"
    assert "MODELYARD_CANDIDATE_URI" not in env_vars(only)
    assert only["spec"]["replicas"] == 4


def _weights(state: RenderedState) -> dict[str, str]:
    return {
        r.inputs["metadata"]["name"]: r.inputs["data"]["candidateWeight"]
        for r in state.of_type("kubernetes:core/v1:ConfigMap")
    }


@pytest.mark.parametrize("strategy", ["ab", "shadow"])
def test_ab_and_shadow_pods_serve_both_versions_on_kubernetes(
    environments: Path, strategy: str
) -> None:
    state = _promote(
        environments,
        "staging",
        strategy,
        desiredVersion=5,
        image=pinned("staging", "v5"),
        stableVersion=4,
        stableImage=pinned("staging", "v4"),
    )
    (pods,) = deployments(state).values()
    variables = env_vars(pods)
    assert variables["MODELYARD_ROLLOUT"] == strategy
    assert (variables["MODELYARD_MODEL_URI"], variables["MODELYARD_CANDIDATE_URI"]) == (
        "models:/churn/4",
        "models:/churn/5",
    )


def test_canary_weight_must_be_one_of_the_configured_steps(environments: Path) -> None:
    edit_environment(
        environments,
        "production",
        serving={"canaryWeight": 30, "stableVersion": 1, "stableImage": pinned("production", "v1")},
    )
    with pytest.raises(ConfigError, match=r"canaryWeight: 30 is not one of .*\[10, 50, 100\]"):
        render("production")


def test_unpinned_images_are_refused_by_the_environment_model(environments: Path) -> None:
    edit_environment(
        environments,
        "staging",
        serving={
            "desiredVersion": 3,
            "image": "registry.staging.example.internal/modelyard-serving:v3",
        },
    )
    with pytest.raises(ConfigError, match="must be pinned as REPO:TAG@sha256:DIGEST"):
        render("staging")


def test_args_are_validated_before_any_resource_exists() -> None:
    args = ModelServingArgs(
        namespace="ns",
        service_account="sa",
        strategy="rolling",
        model_name="m",
        desired=Release(None, "repo:tag"),
        tracking_uri="http://mlflow",
        requests={},
        limits={},
    )
    with pytest.raises(ValueError, match="pinned by digest"):
        args.validate()
    with pytest.raises(ValueError, match="weight 0 must be a percentage"):
        ModelServingArgs(**{**args.__dict__, "canary_weight": 0}).validate()  # type: ignore[arg-type]


def test_local_environment_serves_from_a_hardened_self_restarting_container() -> None:
    state = render("local")
    serving = [r for r in state.resources if r.name.startswith("local-serving")]
    # Before a promotion names an image, the server image is built on the engine itself.
    assert sorted(r.type for r in serving) == sorted([
        CONTAINER,
        IMAGE,
        VOLUME,  # MLflow's credentials, as a file
        "modelyard:serving:LocalModelServing",
    ])  # fmt: skip
    image = state.by_name()["local-serving-image"].inputs
    assert image["image_name"].startswith("modelyard-serving:")
    assert not state.of_type("kubernetes:apps/v1:Deployment")
    server = state.by_name()["local-serving-server"]
    inputs = server.inputs
    assert server.parent == "local-serving"
    assert inputs["restart"] == "unless-stopped"
    assert inputs["ports"] == [{"internal": 8080, "external": 8180, "ip": "127.0.0.1"}]
    assert inputs["user"] == "10001:10001"
    assert inputs["read_only"] is True
    assert inputs["capabilities_drop"] == ["ALL"]
    assert "/health" in " ".join(inputs["healthcheck"]["test"])
    assert inputs["memory_mb"] == 1024
    assert inputs["image"] == image["image_name"]
    # MLflow by its name on the platform's network (127.0.0.1 would be the container itself)
    envs = dict(e.split("=", 1) for e in inputs["envs"])
    assert envs["MLFLOW_TRACKING_URI"] == "http://modelyard-local-mlflow:5000"
    assert inputs["networks"] == ["modelyard-local"]


def test_each_model_of_the_local_environment_has_its_own_container_on_its_own_port(
    environments: Path,
) -> None:
    edit_environment(environments, "local", models={"segment": {"localPort": 8191}})
    state = render("local")
    containers = {r.name: r.inputs for r in state.of_type(CONTAINER) if "serving" in r.name}
    assert set(containers) == {"local-serving-server", "local-serving-segment-server"}
    churn, segment = containers["local-serving-server"], containers["local-serving-segment-server"]
    assert (churn["name"], segment["name"]) == (
        "modelyard-local-serving", "modelyard-local-serving-segment")  # fmt: skip
    assert segment["ports"] == [{"internal": 8080, "external": 8191, "ip": "127.0.0.1"}]
    assert churn["ports"][0]["external"] == 8180
    assert (churn["labels"]["modelyard.io/model"], segment["labels"]["modelyard.io/model"]) == (
        "churn", "segment")  # fmt: skip
    assert {
        "path": "/tmp/home/.mlflow",
        "volume": "modelyard-local-serving-segment-credentials",
    } in (segment["volumes"])
    # Neither model promoted yet: both run the server image built on the engine.
    assert segment["image"] == churn["image"]


def test_mlflow_credentials_reach_the_server_as_a_secret_file_never_in_plain_text() -> None:
    state = render_with_mlflow_credentials()
    assert PASSWORD not in state.to_text("json")
    secret = one(state, "core/v1:Secret").inputs
    assert secret["stringData"] == {"credentials": "[secret]"}
    deployment = deployments(state)["auth-server"]
    assert env_vars(deployment)["HOME"] == "/tmp/home"
    assert not [name for name in env_vars(deployment) if "PASSWORD" in name]
    assert {"name": "mlflow", "mountPath": "/tmp/home/.mlflow", "readOnly": True} in container(
        deployment
    )["volumeMounts"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "mlflow",
        "secret": {"secretName": "auth-mlflow-credentials", "defaultMode": 0o440},
    } in volumes
    local = one(state, CONTAINER).inputs
    # As on Kubernetes: a 0400 file in a volume of its own, HOME pointing there; no env var.
    envs = dict(e.split("=", 1) for e in local["envs"])
    assert envs["HOME"] == "/tmp/home" and not [n for n in envs if "PASSWORD" in n]
    assert local["uploads"] == "[secret]"  # the credentials file, mode 0400 (local_serving.py)
    assert {
        "path": "/tmp/home/.mlflow",
        "volume": "modelyard-local-serving-credentials",
    } in local["volumes"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_each_served_model_has_its_own_deployment_and_service_selecting_only_its_pods(
    environments: Path,
) -> None:
    segment = pinned("production", "segment-v4")
    edit_environment(
        environments,
        "production",
        serving={"desiredVersion": 9, "image": pinned("production", "v9")},
        models={"segment": {"localPort": 8291, "desiredVersion": 4, "image": segment}},
    )
    state = render("production")
    found = deployments(state)
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in found.items()}
    assert set(found) == {"production-serving-server", "production-serving-segment-server"}
    assert env_vars(found["production-serving-server"])["MODELYARD_MODEL_URI"] == "models:/churn/9"
    ours = found["production-serving-segment-server"]
    assert container(ours)["image"] == segment
    assert env_vars(ours)["MODELYARD_MODEL_URI"] == "models:/segment/4"
    services = {r.name: r.inputs for r in state.of_type("kubernetes:core/v1:Service")}
    budgets = {r.name: r.inputs for r in state.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    for model, prefix in (
        ("churn", "production-serving"),
        ("segment", "production-serving-segment"),
    ):
        # The Service, the disruption budget and the Deployment each select this model's pods only.
        for selector in (
            services[f"{prefix}-service"]["spec"]["selector"],
            budgets[f"{prefix}-pdb"]["spec"]["selector"]["matchLabels"],
            found[f"{prefix}-server"]["spec"]["selector"]["matchLabels"],
        ):
            assert [name for name, labels in pods.items() if _selects(selector, labels)] == [
                f"{prefix}-server"
            ], (model, selector)
        assert pods[f"{prefix}-server"]["modelyard.io/model"] == model


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        ({"Segment_V2": {"localPort": 8291}}, "modelyard:models.Segment_V2: on Kubernetes"),
        (
            {"segment": {"localPort": 8291, "desiredVersion": 4,
                         "image": "registry.example.internal/modelyard-serving:segment-v4"}},
            "modelyard:models.segment.image: 'registry.example.internal/modelyard-serving:"
            "segment-v4' must be pinned",
        ),
    ],
)  # fmt: skip
def test_a_model_kubernetes_could_not_serve_is_refused_naming_its_key(
    environments: Path, models: dict[str, object], problem: str
) -> None:
    edit_environment(environments, "production", models=models)
    with pytest.raises(ConfigError) as refused:
        render("production")
    assert problem in str(refused.value)


def _tokens(*names: str) -> dict[str, object]:
    return {
        "tokens": {name: {"secure": f"v1:stand-in-{name}"} for name in names},
        "metricsToken": {"secure": "v1:stand-in-metrics"},
    }


def test_bearer_tokens_reach_the_pods_as_a_mounted_secret_and_a_rotation_restarts_no_pod(
    environments: Path,
) -> None:
    edit_environment(environments, "staging", serving={"auth": _tokens("pipeline", "apps")})
    state = render("staging")
    secrets = {
        r.inputs["metadata"]["name"]: r.inputs for r in state.of_type("kubernetes:core/v1:Secret")
    }
    tokens = secrets["staging-serving-auth"]
    assert tokens["stringData"] == {
        "scoring.pipeline": "[secret]", "scoring.apps": "[secret]", "metrics": "[secret]"
    }  # fmt: skip
    (deployment,) = deployments(state).values()
    assert env_vars(deployment)["MODELYARD_AUTH_DIR"] == "/etc/modelyard/auth"
    assert {"name": "auth", "mountPath": "/etc/modelyard/auth", "readOnly": True} in container(
        deployment
    )["volumeMounts"]
    assert {
        "name": "auth",
        "secret": {"secretName": "staging-serving-auth", "defaultMode": 0o440},
    } in (deployment["spec"]["template"]["spec"]["volumes"])
    assert not [value for value in env_vars(deployment).values() if "stand-in" in value]
    # A token added (or removed) changes the Secret's content, never the pods' template: the
    # kubelet swaps the mounted files and the server re-reads them.
    edit_environment(environments, "staging", serving={"auth": _tokens("pipeline", "apps", "next")})
    rotated = render("staging")
    assert deployments(rotated) == deployments(state)
    names = {
        r.inputs["metadata"]["name"]: r.inputs for r in rotated.of_type("kubernetes:core/v1:Secret")
    }
    assert set(names["staging-serving-auth"]["stringData"]) == {
        "scoring.pipeline", "scoring.apps", "scoring.next", "metrics"
    }  # fmt: skip


def test_without_auth_the_pods_get_no_token_folder(environments: Path) -> None:
    (deployment,) = deployments(render("staging")).values()
    assert "MODELYARD_AUTH_DIR" not in env_vars(deployment)
    assert "auth" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_bearer_tokens_reach_the_local_container_as_0400_files_in_a_volume(
    environments: Path,
) -> None:
    edit_environment(environments, "local", serving={"auth": _tokens("pipeline")})
    server = render("local").by_name()["local-serving-server"].inputs
    envs = dict(e.split("=", 1) for e in server["envs"])
    assert envs["MODELYARD_AUTH_DIR"] == "/etc/modelyard/auth"
    assert {"path": "/etc/modelyard/auth", "volume": "modelyard-local-serving-auth"} in (
        server["volumes"]
    )
    assert server["uploads"] == "[secret]"  # the files (local_serving.py: 0400, the server's user)


def test_a_token_name_that_cannot_be_a_file_name_is_refused_naming_its_key(
    environments: Path,
) -> None:
    edit_environment(environments, "staging", serving={"auth": _tokens("CI_token")})
    with pytest.raises(ConfigError, match=r"modelyard:serving.auth.tokens.*'CI_token'"):
        render("staging")
