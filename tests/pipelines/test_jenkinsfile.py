"""The Jenkinsfile and the local runner run the same stages in the same order."""

from __future__ import annotations

import re

from pipelines.pipeline.stages import STAGES
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
    assert "withCredentials" in JENKINSFILE and "credentials('modelyard-mlflow-uri')" in JENKINSFILE
    assert not re.search(r"(?i)(password|token|secret)\s*=\s*['\"][^'\"$]", JENKINSFILE)


def test_triggers_approval_and_failure_handling_are_declared() -> None:
    assert "pollSCM(" in JENKINSFILE and "cron(" in JENKINSFILE  # polling and the nightly retrain
    assert "input(" in JENKINSFILE and "submitter: 'ml-leads'" in JENKINSFILE
    assert "junit " in JENKINSFILE
    assert re.search(r"post \{\s*failure \{[^}]*modelyard pipeline failed", JENKINSFILE)
