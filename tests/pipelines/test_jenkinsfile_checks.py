"""What Jenkins would say about pipelines/Jenkinsfile, checked offline: the declarative rules
(always), Groovy 2.4's parser and npm-groovy-lint (tools/jenkinsfile-check/install.sh installs
them; without them these skip, and fail with MODELYARD_REQUIRE_JENKINSFILE_TOOLS=1).

Each check is also run on a broken copy, so none of them passes by not looking."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from modelyard.infra.pinned_tools import tools_dir

from tests.helpers import MODELYARD, REPO, edit_environment, git
from tests.pipelines import jenkinsfile_model as model

JENKINSFILE = REPO / "pipelines" / "Jenkinsfile"
SOURCE = JENKINSFILE.read_text()
# Every Jenkinsfile shipped: the pipeline and the scheduled drift check.
SHIPPED = [JENKINSFILE, REPO / "pipelines" / "Jenkinsfile.drift"]
CHECKS = REPO / "tools" / "jenkinsfile-check"
CHECK = CHECKS / "check.sh"


def _require(problem: str | None) -> None:
    """A missing tool skips with a reason, and fails where the tools are required (CI)."""
    if problem is None:
        return
    if os.environ.get("MODELYARD_REQUIRE_JENKINSFILE_TOOLS") == "1":
        pytest.fail(f"MODELYARD_REQUIRE_JENKINSFILE_TOOLS=1 but {problem}")
    pytest.skip(f"{problem}: run tools/jenkinsfile-check/install.sh")


@pytest.fixture(scope="session")
def groovy() -> None:
    _require(None if shutil.which("groovy") else "no `groovy` on PATH")


@pytest.fixture(scope="session")
def groovy_lint() -> None:
    package = json.loads((CHECKS / "package.json").read_text())
    version = package["dependencies"]["npm-groovy-lint"]
    lock = hashlib.sha256((CHECKS / "package-lock.json").read_bytes()).hexdigest()[:10]
    binary = tools_dir() / f"npm-groovy-lint-{version}-{lock}/node_modules/.bin/npm-groovy-lint"
    _require(None if binary.is_file() else f"no npm-groovy-lint {version} at {binary}")


def _check(what: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), what, str(path)], capture_output=True, text=True, timeout=300, check=False
    )


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SOURCE, old
    path = tmp_path / "Jenkinsfile"
    path.write_text(SOURCE.replace(old, new, 1))
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_declarative_structure_is_what_jenkins_accepts(path: Path) -> None:
    tree = model.parse(path.read_text())
    assert model.declarative_problems(tree) == []
    assert model.misplaced_scripts(tree) == []
    assert len(model.stages(tree)) >= 1  # the rules saw the stages


STAGE_CHECKOUT = "    stage('checkout') {\n      steps {\n"
BROKEN = {
    "no agent": ("  agent { label 'modelyard' }\n", "", "`pipeline` has no `agent` section"),
    "a misspelt section": ("  options {", "  option {", "`option` is not allowed directly in `pipeline`"),
    "a post condition Jenkins lacks": (
        "        failure { sh '.venv/bin/modelyard pipeline failed \"$ENV\" --data \"$DATA\" "
        "--stage checkout || true' }",
        "        failed { sh 'true' }",
        "`failed` is not allowed directly in `post`",
    ),
    "steps and parallel in one stage": (
        STAGE_CHECKOUT,
        "    stage('checkout') {\n      parallel { stage('x') { steps { sh 'true' } } }\n"
        "      steps {\n",
        "stage 'checkout' needs exactly one of steps, stages, parallel or matrix",
    ),
    "a stage without steps": (
        STAGE_CHECKOUT,
        "    stage('checkout') {\n      environment { X = 'y' }\n      options {\n",
        "stage 'checkout' needs exactly one of steps",
    ),
    "plain Groovy among the steps": (
        "        checkout scm\n", "        def x = 1\n        checkout scm\n",
        "plain Groovy in the steps of stage 'checkout'",
    ),
    "script outside steps": (
        STAGE_CHECKOUT, "    stage('checkout') {\n      script { echo 'x' }\n      steps {\n",
        "`script` outside `steps`",
    ),
    "a stage twice": ("stage('evaluate')", "stage('train')", "stage 'train' is declared twice"),
}  # fmt: skip


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_the_structure_check_refuses_what_jenkins_refuses(case: str) -> None:
    old, new, expected = BROKEN[case]
    assert old in SOURCE, old
    tree = model.parse(SOURCE.replace(old, new, 1))
    problems = model.declarative_problems(tree) + model.misplaced_scripts(tree)
    assert any(expected in problem for problem in problems), problems
    assert all(re.match(r"line \d+: ", p) for p in problems)  # each names where


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_groovy_parses_it_into_the_tree_the_structure_checks_read(groovy: None, path: Path) -> None:
    parsed = _check("parse", path)
    assert parsed.returncode == 0, parsed.stderr
    # Groovy's own AST and the tree the rules and the command tests read are the same.
    assert json.loads(parsed.stdout) == model.parse(path.read_text())


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_groovy_sees_the_same_tree_in_each_broken_copy(
    groovy: None, tmp_path: Path, case: str
) -> None:
    old, new, _ = BROKEN[case]
    parsed = _check("parse", _broken(tmp_path, old, new))
    assert parsed.returncode == 0, parsed.stderr  # valid Groovy, invalid declarative
    assert json.loads(parsed.stdout) == model.parse(SOURCE.replace(old, new, 1))


def test_groovy_reports_a_syntax_error_with_file_and_line(groovy: None, tmp_path: Path) -> None:
    broken = _broken(tmp_path, "timeout(time: 2, unit: 'HOURS')", "timeout(time: 2, unit: 'HOURS'")
    parsed = _check("parse", broken)
    assert parsed.returncode == 1
    line = SOURCE[: SOURCE.index("timeout(time: 2")].count("\n") + 1
    # Groovy notices the missing `)` where the next statement starts.
    where = rf"{re.escape(str(broken))}:({line}|{line + 1}):\d+: expecting '\)'"
    assert re.search(where, parsed.stderr), parsed.stderr


# The promote-production script, run by Groovy with Jenkins' steps stood in for: `sh` answers the
# number of approvals production requires, each `input` returns the next approver's id.
APPROVALS = """
env = [:]
asked = []
answers = ['ana', 'bo-b']
def sh(Map args) { asked << args.script; return '2\\n' }
def input(Map args) { asked << args.message; return answers.remove(0) }
%s
println env.APPROVERS
println asked.join('\\n')
"""


def test_each_approver_reaches_the_promotion_stage_verbatim(groovy: None, tmp_path: Path) -> None:
    script = tmp_path / "approvals.groovy"
    script.write_text(APPROVALS % model.script_source(SOURCE, "promote-production"))
    ran = _check("groovy", script)
    assert ran.returncode == 0, ran.stderr
    approvers, query, *questions = ran.stdout.splitlines()
    assert "l('production').promotion.approvals.required" in query
    assert questions == ["Promote to production? (approval 1 of 2)",
                         "Promote to production? (approval 2 of 2)"]  # fmt: skip
    # what the stage's shell then passes on: one --approved-by per approver, as each answered
    [stage] = [
        s for s in model.stages(model.parse(SOURCE)) if s["strings"] == ["promote-production"]
    ]
    [command] = [c for c in model.shell_commands(stage) if "$APPROVERS" in c]
    words = subprocess.run(
        ["bash", "-c", "printf '%s\\n' " + command.split(" ", 1)[1]],
        env={"ENV": "production", "DATA": "d.csv", "APPROVERS": approvers},
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert [w for w in words if w.startswith("--approved-by")] == [
        "--approved-by=ana",
        "--approved-by=bo-b",
    ]


# The checkout stage's script, run by Groovy with Jenkins' steps stood in for: `sh` runs the real
# command in a project holding a change (the build's parameters in its environment, as Jenkins
# sets them), each `build` is recorded.
FAN_OUT = """
params = [ENV: 'local', MODEL: System.getenv('MODEL'), REASON: 'push']
env = [GIT_PREVIOUS_SUCCESSFUL_COMMIT: System.getenv('GIT_PREVIOUS_SUCCESSFUL_COMMIT'),
       JOB_NAME: 'modelyard/main']
currentBuild = [:]
builds = []
def sh(Map args) {
    Process shell = ['bash', '-c', args.script].execute(null, new File(System.getenv('PROJECT')))
    StringBuilder out = new StringBuilder(), err = new StringBuilder()
    shell.waitForProcessOutput(out, err)
    assert shell.exitValue() == 0 : err
    return out.toString()
}
def string(Map args) { return args }
def build(Map args) { builds << args }
%s
println groovy.json.JsonOutput.toJson([builds: builds, kind: env.BUILD_KIND, result: currentBuild.result])
"""


def _checkout_script(
    project: Path, tmp_path: Path, trains: str, since: str = "HEAD"
) -> dict[str, Any]:
    """What the checkout stage's script decides: the builds it starts, BUILD_KIND, the result."""
    program = project / ".venv" / "bin" / "modelyard"  # what `make setup` installs
    if not program.exists():
        program.parent.mkdir(parents=True)
        program.symlink_to(MODELYARD)
    script = tmp_path / "fan_out.groovy"
    script.write_text(FAN_OUT % model.script_source(SOURCE, "checkout"))
    environment = {**os.environ, "PROJECT": str(project), "ENV": "local", "MODEL": trains,
                   "DATA": str(tmp_path / "training data" / "churn.parquet"),
                   "GIT_PREVIOUS_SUCCESSFUL_COMMIT": since}  # fmt: skip
    ran = subprocess.run([str(CHECK), "groovy", str(script)], capture_output=True, text=True,
                         timeout=300, check=False, env=environment)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    decided: dict[str, Any] = json.loads(ran.stdout.splitlines()[-1])
    return decided


def _fan_out(project: Path, tmp_path: Path, trains: str) -> list[dict[str, Any]]:
    decided = _checkout_script(project, tmp_path, trains)
    assert decided["kind"] == "train" and decided["result"] is None
    builds: list[dict[str, Any]] = decided["builds"]
    return builds


def test_a_push_that_touches_other_models_starts_a_build_of_each(
    groovy: None, project: Path, tmp_path: Path
) -> None:
    """A change to what trains every model: this build trains local's own model (churn), and
    starts one for segment with its own data, with parameters the Jenkinsfile declares."""
    (tmp_path / "training data").mkdir()  # a folder name with a space
    (tmp_path / "training data" / "segment.csv").touch()
    (project / "ml" / "training").mkdir(parents=True)
    (project / "ml" / "training" / "run.py").write_text("# a change every model trains with\n")
    builds = _fan_out(project, tmp_path, trains="")
    assert builds == [{
        "job": "modelyard/main", "wait": False,
        "parameters": [{"name": "ENV", "value": "local"},
                       {"name": "DATA", "value": str(tmp_path / "training data" / "segment.csv")},
                       {"name": "MODEL", "value": "segment"},
                       {"name": "REASON", "value": "push: segment changed"}],
    }]  # fmt: skip
    declared = set(model.declared_parameters(model.parse(SOURCE)))
    assert {p["name"] for p in builds[0]["parameters"]} == declared
    # A build started for one model starts no others.
    assert _fan_out(project, tmp_path, trains="segment") == []


def test_a_push_of_release_commits_builds_nothing_and_one_of_settings_deploys_them(
    groovy: None, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promotion a build pushed starts another build: it must do nothing (not train, not
    fan out, not promote again). A person's change of settings deploys without training."""
    from modelyard.contracts.environment import load_environment
    from modelyard.pipelines.promotion.release_git import ReleaseChange, write_release

    base = git(project, "rev-parse", "HEAD").stdout.strip()
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(project / "environments"))
    change = ReleaseChange("churn", "staging", "promote", None, 2, "jenkins", "", "run-1")
    write_release(load_environment("staging"), "modelyard:serving", {"desiredVersion": 2}, change)
    decided = _checkout_script(project, tmp_path, trains="", since=base)
    assert decided == {"builds": [], "kind": "releases", "result": "NOT_BUILT"}
    edit_environment(project / "environments", "staging", {"serving.replicas": 3})  # pushed
    decided = _checkout_script(project, tmp_path, trains="", since=base)
    assert decided == {"builds": [], "kind": "deploy", "result": None}
    # Only the deploy stages run in such a build; every training stage is skipped.
    for stage in model.stages(model.parse(SOURCE)):
        [when] = [n for n in stage["body"] if n.get("call") == "when"] or [None]
        name = stage["strings"][0]
        if name == "checkout":
            assert when is None
        else:
            kind = "!= 'releases'" if name in DEPLOY_STAGES else "== 'train'"
            assert when is not None, name
            assert f"env.BUILD_KIND {kind}" in SOURCE.splitlines()[when["line"] - 1], name


DEPLOY_STAGES = (
    "deploy-staging",
    "smoke-test",
    "promote-production",
    "deploy-production",
    "notify",
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_npm_groovy_lint_finds_nothing(groovy_lint: None, path: Path) -> None:
    linted = _check("lint", path)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_npm_groovy_lint_fails_on_a_finding(groovy_lint: None, tmp_path: Path) -> None:
    broken = _broken(tmp_path, "List<String> approvers = []", "List<String> approvers = []  ")
    linted = _check("lint", broken)
    assert linted.returncode == 1, linted.stdout + linted.stderr
    assert "TrailingWhitespace" in linted.stdout
