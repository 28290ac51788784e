"""Each agreement between two parts is one definition; these tests fail when one side drifts."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.contracts import state, tags, variables
from modelyard.contracts.environment import load_environment
from modelyard.contracts.serving_options import server_variables
from modelyard.infra.providers.resource_types import CONTAINER
from modelyard.infra.render import render
from modelyard.ml.serving.__main__ import options_from_environment
from modelyard.pipelines.deploy import serve_options

from tests.helpers import DELETE, REPO, edit_environment

ENVIRONMENTS = ["local", "staging", "production"]


def test_the_readme_documents_the_state_folder_as_laid_out() -> None:
    readme = (REPO / "README.md").read_text()
    for part in state.LAYOUT:
        assert f"| `{part.path}` | {part.holds} | {part.safe_to_delete} |" in readme


def test_a_registered_version_keeps_lineage_and_gate_but_not_the_runs_own_tags() -> None:
    run = {
        **tags.Lineage("staging", "abc", "run-1", "d" * 64, "/data.csv").to_tags(),
        **tags.Gate("roc_auc >= 0.8", "0.850000", passed=True).to_tags(),
        tags.JOB: "job",
        tags.MODEL_ID: "m-1",
        tags.MODEL_URI: "models:/m-1",
        tags.TRIALS: "3",
        "mlflow.user": "someone",
    }
    kept = tags.version_tags(run)
    assert tags.Lineage.from_tags(kept) == tags.Lineage("staging", "abc", "run-1", "d" * 64,
                                                         "/data.csv")  # fmt: skip
    assert tags.Gate.from_tags(kept).passed
    assert not set(kept) & (tags.RUN_ONLY | {"mlflow.user"})


def _sampled(env: str, rate: float, environments: Path) -> None:
    edit_environment(environments, env, {"monitoring.sampleRate": rate,
                                         "monitoring.canaryStepSeconds": 17.5,
                                         "serving.compileModels": False})  # fmt: skip


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_serving_target_gets_the_environments_settings(env: str, environments: Path) -> None:
    """A local process, the Docker container and the Kubernetes pods run the server with the
    same options, all from the environment file (monitoring.sampleRate once never reached pods)."""
    _sampled(env, 0.37, environments)
    environment = load_environment(env)
    expected = server_variables(environment)
    assert expected[variables.SAMPLE_RATE] == "0.37"

    local = serve_options(environment, port=18000, state=Path("/tmp/unused"))
    assert (local.sample_rate, local.canary_step_seconds) == (0.37, 17.5)
    assert local.strategy == environment.promotion.rollout.strategy
    assert local.limits.max_error_rate == environment.promotion.rollout.max_error_rate

    if environment.serving.platform == "docker":
        # Without the platform's MLflow credentials in the list, the envs render unmasked.
        edit_environment(environments, env, {"platform": DELETE})
        rendered = render(env)
        [container] = [r for r in rendered.resources if r.type == CONTAINER
                       and r.name.endswith("-serving-server")]  # fmt: skip
        given = dict(e.split("=", 1) for e in container.inputs["envs"] if "=" in e)
    else:
        rendered = render(env)
        [deployment, *_] = [r for r in rendered.resources
                            if r.type == "kubernetes:apps/v1:Deployment"]  # fmt: skip
        [server] = deployment.inputs["spec"]["template"]["spec"]["containers"]
        given = {e["name"]: e["value"] for e in server["env"]}
    assert {k: given[k] for k in expected} == expected
    # ... and the server reads them back into the same options as the local process.
    pod = options_from_environment(given)
    assert (pod.sample_rate, pod.canary_step_seconds, pod.limits, pod.compile_models) == (
        local.sample_rate, local.canary_step_seconds, local.limits, False,
    )  # fmt: skip
