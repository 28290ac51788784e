"""What the stack makes for a training Job (pipeline.trainIn kubernetes), rendered offline: the
Job's identity, volume and egress in serving's namespace, and room in the quota for its pod."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.contracts import training_job
from modelyard.infra.render import RenderedState, render
from test_render_support import REPO, edit_environment, one


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> tuple[RenderedState, RenderedState]:
    """staging as shipped, and staging training on Kubernetes."""
    import shutil

    folder: Path = tmp_path_factory.mktemp("environments")
    shutil.copytree(REPO / "environments", folder, dirs_exist_ok=True)
    edit_environment(
        folder,
        "staging",
        pipeline={"trainIn": "kubernetes"},
        training={"kubernetes": {"storage": "8Gi", "storageClass": "fast-ssd"}},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(folder))
        trains = render("staging")
    return render("staging"), trains


def test_a_namespace_that_trains_gets_a_volume_an_identity_and_egress(
    states: tuple[RenderedState, RenderedState],
) -> None:
    shipped, trains = states
    assert not shipped.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    claim = one(trains, "PersistentVolumeClaim").inputs
    assert claim["metadata"]["name"] == training_job.STATE_CLAIM
    assert claim["metadata"]["namespace"] == "modelyard-staging"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one worker: any class will do
    accounts = {
        a.inputs["metadata"]["name"]: a.inputs
        for a in trains.of_type("kubernetes:core/v1:ServiceAccount")
    }
    assert accounts[training_job.SERVICE_ACCOUNT]["automountServiceAccountToken"] is False
    policies = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in trains.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    egress = policies["allow-training-egress"]
    assert egress["podSelector"]["matchLabels"] == training_job.LABELS
    # DNS, and MLflow where serving's egress goes (staging: 443 anywhere); nothing else.
    assert [rule["ports"] for rule in egress["egress"]] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 443}],
    ]


def test_the_quota_has_room_for_the_training_pod(
    states: tuple[RenderedState, RenderedState],
) -> None:
    shipped, trains = (one(s, "ResourceQuota").inputs["spec"]["hard"] for s in states)
    assert int(trains["pods"]) == int(shipped["pods"]) + 1
    # training.kubernetes.resources' defaults: requests 1 CPU / 1Gi, limits 2 CPUs / 4Gi.
    assert int(trains["requests.cpu"][:-1]) == int(shipped["requests.cpu"][:-1]) + 1000
    assert int(trains["limits.memory"][:-2]) == int(shipped["limits.memory"][:-2]) + 4096


def test_the_deployer_may_run_jobs_and_stream_data_but_still_read_no_secret(
    states: tuple[RenderedState, RenderedState],
) -> None:
    rules = one(states[1], "v1:Role").inputs["rules"]
    jobs = next(r for r in rules if r["resources"] == ["jobs"])
    assert jobs["apiGroups"] == ["batch"] and "create" in jobs["verbs"]
    assert any(r["resources"] == ["pods/exec"] and r["verbs"] == ["create"] for r in rules)
    assert not any("secrets" in r["resources"] for r in rules)


def test_several_workers_reach_each_other_share_the_volume_and_fit_in_the_quota(
    tmp_path: Path, states: tuple[RenderedState, RenderedState]
) -> None:
    import shutil

    shutil.copytree(REPO / "environments", tmp_path, dirs_exist_ok=True)
    edit_environment(tmp_path, "staging", pipeline={"trainIn": "kubernetes"},
                     training={"kubernetes": {"workers": 3}})  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(tmp_path))
        three = render("staging")
    policies = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in three.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    network = policies["allow-training-network"]
    peers = [{"podSelector": {"matchLabels": training_job.LABELS}}]
    ports = [{"protocol": "TCP", "port": training_job.NETWORK_PORT,
              "endPort": training_job.NETWORK_PORT + training_job.NETWORK_PORTS - 1}]  # fmt: skip
    assert network["podSelector"]["matchLabels"] == training_job.LABELS
    assert network["ingress"] == [{"from": peers, "ports": ports}]
    assert network["egress"] == [{"to": peers, "ports": ports}]
    shipped = one(states[0], "ResourceQuota").inputs["spec"]["hard"]
    hard = one(three, "ResourceQuota").inputs["spec"]["hard"]
    assert int(hard["pods"]) == int(shipped["pods"]) + 3
    assert int(hard["requests.cpu"][:-1]) == int(shipped["requests.cpu"][:-1]) + 3 * 1000
    # The workers mount the volume at once, from whichever nodes they run on.
    assert one(three, "PersistentVolumeClaim").inputs["spec"]["accessModes"] == ["ReadWriteMany"]
    # One worker needs no such policy: a stack that trains alone is unchanged.
    names = {p.inputs["metadata"]["name"]
             for p in states[1].of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}  # fmt: skip
    assert "allow-training-network" not in names
