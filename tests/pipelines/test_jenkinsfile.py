"""The Jenkinsfile and the local runner run the same stages in the same order."""

from __future__ import annotations

import re

import yaml
from modelyard.contracts.environment import load_environment
from modelyard.infra.components import jenkins
from modelyard.pipelines.pipeline.stages import STAGES

from tests.helpers import REPO

JENKINSFILE = (REPO / "pipelines" / "Jenkinsfile").read_text()


def test_jenkinsfile_stages_match_the_local_runner() -> None:
    declared = re.findall(r"^\s*stage\('([^']+)'\)", JENKINSFILE, flags=re.MULTILINE)
    assert declared == [stage.name for stage in STAGES]


def test_every_stage_calls_its_own_modelyard_stage_command() -> None:
    blocks = re.split(r"^\s*stage\('", JENKINSFILE, flags=re.MULTILINE)[1:]
    for block in blocks:
        name = block.split("'", 1)[0]
        assert f"modelyard pipeline stage {name} " in block, name


def test_credentials_come_from_jenkins_never_the_repository() -> None:
    assert "withCredentials" in JENKINSFILE
    assert not re.search(r"(?i)(password|token|secret)\s*=\s*['\"][^'\"$]", JENKINSFILE)


def test_every_credential_the_jenkinsfile_binds_is_one_jenkins_is_configured_with() -> None:
    bound = set(re.findall(r"credentialsId: '([^']+)'", JENKINSFILE))
    assert {"modelyard-mlflow", "modelyard-registry"} <= bound
    for env in ("staging", "production"):
        platform = load_environment(env).platform
        assert platform is not None
        casc = yaml.safe_load(
            jenkins.render_environment_casc(
                platform.jenkins, environment=env, url="http://jenkins:8080",
                registry_address="registry:5000", mlflow_url="http://mlflow:5000",
            )
        )  # fmt: skip
        credentials = casc["credentials"]["system"]["domainCredentials"][0]["credentials"]
        provided = {next(iter(c.values()))["id"] for c in credentials}
        # A controller deploys only to the clusters it holds a kubeconfig of.
        elsewhere = {f"modelyard-kubeconfig-{t}" for t in ("staging", "production")} - provided
        assert bound - elsewhere <= provided, env
        node_env = casc["jenkins"]["globalNodeProperties"][0]["envVars"]["env"]
        assert "MLFLOW_TRACKING_URI" in {e["key"] for e in node_env}
    assert "credentials(" not in JENKINSFILE.replace("withCredentials(", "")


def test_triggers_approval_and_failure_handling_are_declared() -> None:
    assert "pollSCM(" in JENKINSFILE and "cron(" in JENKINSFILE  # polling and the nightly retrain
    assert "input(" in JENKINSFILE and "submitter: 'ml-leads'" in JENKINSFILE
    assert "junit " in JENKINSFILE
    assert re.search(r"post \{\s*failure \{[^}]*modelyard pipeline failed", JENKINSFILE)
