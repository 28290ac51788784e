"""The Jenkinsfile runs what the local runner runs: the same stage commands in the same order,
and on a failure the same rollback-and-notify for the stage that failed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from modelyard.contracts import variables
from modelyard.contracts.environment import load_environment
from modelyard.infra.components import jenkins
from modelyard.pipelines.cli import app
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.pipeline import runner
from modelyard.pipelines.pipeline.stages import STAGES
from typer.testing import CliRunner

from tests.helpers import REPO
from tests.pipelines import jenkinsfile_model as model

JENKINSFILE = (REPO / "pipelines" / "Jenkinsfile").read_text()
TREE = model.parse(JENKINSFILE)
STAGE_NODES = {node["strings"][0]: node for node in model.stages(TREE)}
PROGRAM = ".venv/bin/modelyard"  # what `make setup` installs in the workspace
ENV, BUILD_TAG = "staging", "jenkins-modelyard-main-7"

Call = tuple[str, str, str]  # what a stage ran: stage name, environment, data


def _argv(command: str, data: Path, approvers: str = "", model: str = "") -> list[str]:
    """The words a Jenkins `sh` step hands the program, split by a real shell (the build's
    parameters in its environment, as Jenkins sets them: MODEL empty by default)."""
    assert command.startswith(PROGRAM + " "), command
    printed = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + command.removeprefix(PROGRAM + " ")],
        env={"PATH": os.environ["PATH"], "ENV": ENV, "DATA": str(data), "APPROVERS": approvers,
             "MODEL": model},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return printed.stdout.split("\0")[:-1]


def _invoke(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every run_stage / after_failure call, with the stage code itself replaced by a recorder."""
    calls: list[Any] = []
    monkeypatch.setenv(variables.STATE_DIR, str(tmp_path / "state"))
    monkeypatch.setenv(variables.PIPELINE_RUN_ID, BUILD_TAG)  # Jenkins' environment block

    def run_stage(name: str, ctx: Any, say: Any) -> None:
        calls.append(("stage", name, ctx.env, ctx.data, ctx.run_id, list(ctx.approvers), ctx.model))

    def after_failure(ctx: Any, environment: Any, stage: Any, reason: str, say: Any) -> None:
        calls.append(("failed", stage.name, ctx.env, ctx.data))

    monkeypatch.setattr(runner, "run_stage", run_stage)
    monkeypatch.setattr(runner, "after_failure", after_failure)
    return calls


class _Child:
    """What supervise() sees of the stage process: the real command, run in this process."""

    def __init__(self, command: list[str], **_: Any) -> None:
        _invoke(command[1:])
        self.pid, self.stdout = 0, iter(())

    def wait(self) -> int:
        return 0


def _local_run(
    data: Path, monkeypatch: pytest.MonkeyPatch, until: str | None = None,
    model: str | None = None, run_id: str = "local-1",
) -> None:  # fmt: skip
    # Only the runner's view of subprocess: the test's own shell calls stay real.
    fake = SimpleNamespace(Popen=_Child, PIPE=subprocess.PIPE, STDOUT=subprocess.STDOUT)
    monkeypatch.setattr(runner, "subprocess", fake)
    runner.run_pipeline(ENV, data, lambda _: None, lambda *_: None, run_id, until, model)


def test_stage_names_and_order_match_the_local_runner() -> None:
    assert list(STAGE_NODES) == [stage.name for stage in STAGES]


def test_each_stage_runs_the_command_the_local_runner_runs(
    recorded: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "churn.parquet"
    _local_run(data, monkeypatch)
    local = [call[:4] for call in recorded]
    assert {call[4] for call in recorded} == {"local-1"}  # one pipeline run throughout
    recorded.clear()
    monkeypatch.setenv(variables.PIPELINE_RUN_ID, BUILD_TAG)  # the local run set its own
    for name, stage in STAGE_NODES.items():
        commands = [c for c in model.steps_commands(stage) if c.startswith(PROGRAM)]
        assert len(commands) == 1, f"stage {name} runs {commands}"
        _invoke(_argv(commands[0], data, approvers="--approved-by=ana --approved-by=bo"))
    assert [call[:4] for call in recorded] == local
    assert {call[4] for call in recorded} == {BUILD_TAG}  # the run id Jenkins sets
    approvals = {call[1]: call[5] for call in recorded}
    assert approvals["promote-production"] == ["ana", "bo"]  # each `input` approver, verbatim


def test_the_model_parameter_trains_that_model_in_every_stage_as_run_model_does(
    recorded: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "segment.parquet"
    _local_run(data, monkeypatch, model="segment", run_id="local-2")
    local = [(call[1], call[6]) for call in recorded]
    assert {model for _, model in local} == {"segment"}
    recorded.clear()
    monkeypatch.setenv(variables.PIPELINE_RUN_ID, BUILD_TAG)
    for stage in STAGE_NODES.values():
        (command,) = [c for c in model.steps_commands(stage) if c.startswith(PROGRAM)]
        _invoke(_argv(command, data, model="segment"))
    assert [(call[1], call[6]) for call in recorded] == local


def test_the_environment_block_gives_every_stage_the_same_run() -> None:
    [pipeline] = model.calls(TREE, "pipeline")
    [environment] = model.calls(pipeline["body"], "environment")
    assert variables.PIPELINE_RUN_ID in {node["assign"] for node in environment["body"]}
    assert "--run-id" not in JENKINSFILE  # one run id, from the environment block only


@pytest.mark.parametrize("failing", [stage.name for stage in STAGES])
def test_a_failed_stage_is_rolled_back_and_reported_as_the_runner_does(
    failing: str, recorded: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "churn.parquet"

    def fail_at(name: str, ctx: Any, say: Any) -> None:
        if name == failing:
            raise PipelineError("boom")

    monkeypatch.setattr(runner, "run_stage", fail_at)
    with pytest.raises(PipelineError):
        _local_run(data, monkeypatch)
    local = list(recorded)
    assert local == [("failed", failing, ENV, str(data))]
    recorded.clear()
    [command] = model.post_commands(STAGE_NODES[failing], "failure")
    assert command.endswith(" || true")  # a failing notification keeps the stage's own error
    _invoke(_argv(command.removesuffix(" || true"), data))
    assert recorded == local


def test_no_pipeline_level_failure_handler_reads_a_stage_name() -> None:
    [pipeline] = model.calls(TREE, "pipeline")
    for post in model.calls(pipeline["body"], "post"):
        for condition in model.calls(post["body"]):
            assert not any("STAGE_NAME" in c for c in model.shell_commands(condition))


def test_stages_run_only_the_kits_commands() -> None:
    for name, stage in STAGE_NODES.items():
        steps = model.steps_commands(stage)
        allowed = {f'{PROGRAM} pipeline stage {name} "$ENV" --data "$DATA"', "make setup"}
        extra = {c for c in steps if c not in allowed}
        if name == "promote-production":  # the approvals it passes on from `input`
            assert extra == {f'{PROGRAM} pipeline stage {name} "$ENV" --data "$DATA" $APPROVERS'}
        elif name == "checkout":  # the model the build trains, from its MODEL parameter
            assert extra == {
                f'{PROGRAM} pipeline stage {name} "$ENV" --data "$DATA" --model "$MODEL"'
            }
        else:
            assert extra == set(), name
    assert "make setup" in model.steps_commands(STAGE_NODES["checkout"])
    assert not re.search(r"\bpulumi\b", "\n".join(c for s in STAGE_NODES.values()
                                                 for c in model.shell_commands(s)))  # fmt: skip


def test_credentials_come_from_jenkins_never_the_repository() -> None:
    assert "withCredentials" in JENKINSFILE
    assert not re.search(r"(?i)(password|token|secret)\s*=\s*['\"][^'\"$]", JENKINSFILE)


def _credentials_bound_by_environment(block: model.Node) -> dict[str, str]:
    """NAME -> credential id, of `NAME = credentials('id')` in the block's `environment {}`."""
    return {
        name: node["strings"][0]
        for name, node in model.environment(block).items()
        if node["function"] == "credentials"
    }


def _all_bound_credentials() -> set[str]:
    by_step = set(re.findall(r"credentialsId: '([^']+)'", JENKINSFILE))
    by_environment = [
        node["strings"][0] for node in model.assignments(TREE) if node["function"] == "credentials"
    ]
    # the tree saw every `credentials(...)` the file holds
    assert len(by_environment) == len(re.findall(r"(?<![A-Za-z])credentials\(", JENKINSFILE))
    return by_step | set(by_environment)


def test_every_credential_the_jenkinsfile_binds_is_one_jenkins_is_configured_with() -> None:
    bound = _all_bound_credentials()
    assert {"modelyard-mlflow", "modelyard-registry", jenkins.PASSPHRASE_CREDENTIAL,
            jenkins.GIT_CREDENTIAL} <= bound  # fmt: skip
    for env in ("staging", "production"):
        platform = load_environment(env).platform
        assert platform is not None
        casc = yaml.safe_load(
            jenkins.render_environment_casc(
                platform.jenkins, environment=env, url="http://jenkins:8080",
                registry_address="registry:5000", mlflow_url="http://mlflow:5000",
                agent_user="jenkins",
            )
        )  # fmt: skip
        credentials = casc["credentials"]["system"]["domainCredentials"][0]["credentials"]
        provided = {next(iter(c.values()))["id"] for c in credentials}
        # A controller deploys only to the clusters it holds a kubeconfig of.
        elsewhere = {f"modelyard-kubeconfig-{t}" for t in ("staging", "production")} - provided
        assert bound - elsewhere <= provided, env
        node_env = casc["jenkins"]["globalNodeProperties"][0]["envVars"]["env"]
        assert {"MLFLOW_TRACKING_URI", jenkins.BACKEND_VARIABLE} <= {e["key"] for e in node_env}


def test_builds_ask_for_the_label_jenkins_gives_its_agents() -> None:
    [pipeline] = model.calls(TREE, "pipeline")
    [agent] = model.calls(pipeline["body"], "agent")
    assert [(n["call"], n["strings"]) for n in agent["body"]] == [("label", [jenkins.AGENT_LABEL])]


def test_triggers_approval_and_reports_are_declared() -> None:
    assert "pollSCM(" in JENKINSFILE and "cron(" in JENKINSFILE  # polling and the nightly retrain
    assert "input(" in JENKINSFILE and "submitter: 'ml-leads'" in JENKINSFILE
    [junit] = [c for c in model.walk(STAGE_NODES["unit-tests"]["body"]) if c["call"] == "junit"]
    assert junit["strings"] == [".modelyard/pipeline/**/junit.xml"]


def _rolled_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """stage -> the environment `pipeline failed --stage STAGE` rolls back with `pulumi up`,
    as the runner's own failure handler decides (the rollback itself recorded, not run)."""
    from modelyard.pipelines import notify
    from modelyard.pipelines.pipeline.context import PipelineContext

    targets: dict[str, str] = {}
    monkeypatch.setenv(variables.STATE_DIR, str(tmp_path / "state"))
    monkeypatch.setattr(notify, "notify", lambda *_, **__: [])
    for stage in STAGES:
        monkeypatch.setattr(
            runner, "rollback_after_failed_deploy",
            lambda ctx, target, reason, say, name=stage.name: targets.__setitem__(name, target),
        )  # fmt: skip
        ctx = PipelineContext.load_or_start("run-1", ENV, str(tmp_path / "d.csv"))
        runner.after_failure(ctx, load_environment(ENV), stage, "boom", lambda _: None)
    return targets


def test_stages_that_run_pulumi_or_reach_the_cluster_get_its_passphrase_and_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rolled_back = _rolled_back(monkeypatch, tmp_path)
    # The deploy stages run `pulumi up`; the smoke test reaches staging's Service; the failure
    # handler of each rolls its environment back with another `up`, in the same stage.
    assert rolled_back == {"deploy-staging": "staging", "smoke-test": "staging",
                           "deploy-production": "production"}  # fmt: skip
    # Where release keys are written, the write is a pushed commit: the promotions, the canary
    # steps and every rollback get the git deploy key, and no other stage does.
    writes_releases = {*rolled_back, "promote-production"}
    for name, stage in STAGE_NODES.items():
        expected = (
            {variables.GIT_SSH_KEY: jenkins.GIT_CREDENTIAL} if name in writes_releases else {}
        )
        if name in rolled_back:
            expected.update({
                "PULUMI_CONFIG_PASSPHRASE": jenkins.PASSPHRASE_CREDENTIAL,
                "KUBECONFIG": f"modelyard-kubeconfig-{rolled_back[name]}",
            })  # fmt: skip
        if name == "smoke-test":  # it scores staging, which asks for a bearer token
            expected[variables.SERVING_TOKEN] = jenkins.serving_token_credential("staging")
        # Stage-level `environment {}`: Jenkins binds it around the steps and the stage's `post`.
        assert _credentials_bound_by_environment(stage) == expected, name
    [pipeline] = model.calls(TREE, "pipeline")
    assert _credentials_bound_by_environment(pipeline) == {}  # no other stage sees them
    # and no step binds KUBECONFIG some other way (it would miss the stage's `post`)
    assert "variable: 'KUBECONFIG'" not in JENKINSFILE
