"""`infra render`: the program under the mock runtime, its manifests validated and scanned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from modelyard.infra.render import render
from test_render_support import (
    REPO,
    edit_environment,
    pinned,
    render_with_mlflow_credentials,
    training_job_manifest,
)

MODELYARD = str(Path(sys.executable).parent / "modelyard")
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
# Checks deliberately skipped, each with its reason (kept empty: every check passes).
CHECKOV_SKIPS: dict[str, str] = {}

# Every shape the program can take on Kubernetes: each strategy mid-rollout, no model yet, and
# two models side by side.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "staging-bootstrap": ("staging", {}),
    "production-bootstrap": ("production", {}),
    "staging-recreate": (
        "staging",
        {
            "promotion": {"rollout": {"strategy": "recreate"}},
            "serving": {"desiredVersion": 2, "image": pinned("staging", "v2")},
        },
    ),
    "staging-rolling": (
        "staging",
        {"serving": {"desiredVersion": 3, "image": pinned("staging", "v3")}},
    ),
    "staging-blue-green": (
        "staging",
        {
            "promotion": {"rollout": {"strategy": "blue-green"}},
            "serving": {
                "desiredVersion": 5,
                "image": pinned("staging", "v5"),
                "stableVersion": 4,
                "stableImage": pinned("staging", "v4"),
            },
        },
    ),
    "production-two-models": (
        "production",
        {
            "serving": {"desiredVersion": 9, "image": pinned("production", "v9")},
            "models": {
                "segment": {
                    "localPort": 8291,
                    "desiredVersion": 4,
                    "image": pinned("production", "segment-v4"),
                },
            },
        },
    ),
    # The namespace a training Job runs in (pipeline.trainIn kubernetes): volume, egress, Secrets.
    "staging-trains-on-kubernetes": (
        "staging",
        {"pipeline": {"trainIn": "kubernetes"}},
    ),
    "production-canary": (
        "production",
        {
            "serving": {
                "desiredVersion": 9,
                "image": pinned("production", "v9"),
                "stableVersion": 8,
                "stableImage": pinned("production", "v8"),
                "canaryWeight": 10,
            }
        },
    ),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifests of every variant, one folder each, as `infra render --out` writes them."""
    root = tmp_path_factory.mktemp("manifests")
    for variant, (env, sections) in VARIANTS.items():
        folder = tmp_path_factory.mktemp(f"env-{variant}")
        shutil.copytree(REPO / "environments", folder, dirs_exist_ok=True)
        edit_environment(folder, env, **sections)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(folder))
            render(env).write_manifests(root / variant)
    render_with_mlflow_credentials().write_manifests(root / "mlflow-credentials")
    # The Job the train stage creates in it: validated and scanned like what the stack makes.
    (root / "training-job").mkdir()
    (root / "training-job" / "job.yaml").write_text(yaml.safe_dump(training_job_manifest()))
    return root


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_every_environment_renders_types_names_parents_and_inputs(env: str) -> None:
    state = render(env)
    components = [r for r in state.resources if r.type.startswith("modelyard:")]
    assert components and all(not c.custom for c in components)
    names = {r.name for r in state.resources}
    for resource in state.resources:
        assert resource.parent is None or resource.parent in names
        assert resource.type.count(":") >= 2
    assert json.loads(state.to_text("json"))["environment"] == env


def test_kubeconfig_reaches_the_provider_only_as_a_secret() -> None:
    (provider,) = render("production").of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]"
    assert provider.inputs["namespace"] == "modelyard-production"


def test_every_manifest_passes_kubernetes_validate_strict(corpus: Path) -> None:
    version = kubernetes_validate.latest_version()
    files = sorted(corpus.rglob("*.yaml"))
    assert len(files) >= 6 * 15
    kinds = set()
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        kinds.add(manifest["kind"])
        kubernetes_validate.validate(manifest, version, strict=True)
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
    } <= kinds


def test_strict_validation_would_catch_a_bad_field(corpus: Path) -> None:
    path = next(corpus.rglob("deployment-*.yaml"))
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        reason = f"checkov is not installed at {CHECKOV}: run `make checkov`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHECKOV


@pytest.mark.slow
def test_checkov_finds_no_failed_check_in_any_manifest(corpus: Path, checkov: Path) -> None:
    command = [str(checkov), "--framework", "kubernetes", "--skip-download", "-d", str(corpus)]
    command += ["--output", "json", "--quiet"]
    if CHECKOV_SKIPS:
        command += ["--skip-check", ",".join(CHECKOV_SKIPS)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['file_path']})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 100
    assert done.returncode == 0


@pytest.mark.slow  # a fresh `modelyard` process (or two renders)
def test_cli_render_prints_state_and_writes_manifests(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    done = subprocess.run(
        [MODELYARD, "infra", "render", "staging", "--format", "json", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    state = json.loads(done.stdout)
    assert {r["type"] for r in state["resources"]} >= {
        "modelyard:cluster:Cluster",
        "modelyard:serving:ModelServing",
        "kubernetes:apps/v1:Deployment",
    }
    written = sorted(p.name for p in out.iterdir())
    assert "namespace-modelyard-staging.yaml" in written
    # 15 for serving, the Secret carrying the platform MLflow's credentials to the pods and the
    # one carrying the bearer tokens.
    assert (
        len(written) == 17
        and "secret-modelyard-staging-staging-serving-mlflow-credentials.yaml" in written
        and "secret-modelyard-staging-staging-serving-auth.yaml" in written
    )
    assert "17 Kubernetes manifest(s)" in done.stderr


@pytest.mark.slow  # a fresh `modelyard` process (or two renders)
def test_cli_render_of_a_broken_environment_is_one_message_and_exit_2(
    environments: Path,
) -> None:
    edit_environment(environments, "staging", serving={"replicas": 0})
    done = subprocess.run(
        [MODELYARD, "infra", "render", "staging"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "modelyard:serving.replicas" in done.stderr
