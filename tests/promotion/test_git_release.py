"""Promotions land in the repository, for real: a bare repository served by `git http-backend`
over HTTP with authentication on 127.0.0.1, two clones acting as two Jenkins agents, separate
`modelyard` processes against a real `mlflow server`. The registry, the records and the remote
branch must always tell one story."""

from __future__ import annotations

import getpass
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from modelyard.contracts import git_trailers
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.promotion import faults, history
from modelyard.pipelines.promotion.records import ABORTED, PENDING, RecordStore
from modelyard.pipelines.promotion.registry import Registry
from promotion_helpers import Register

from tests.git_http_remote import GitRemote, SshServer, git_remote
from tests.helpers import GIT_IDENTITY, MODELYARD, REPO, SHIPPED_REMOTE, git

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Clone:
    """One agent's checkout of the project, with its own state folder (its own machine)."""

    root: Path
    remote: GitRemote
    variables: dict[str, str]

    @property
    def environments(self) -> Path:
        return self.root / "environments"

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MODELYARD, *args], cwd=self.root, capture_output=True, text=True,
                              env={**self.variables, **extra}, timeout=300, check=False)  # fmt: skip

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([MODELYARD, *args], cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**self.variables, **extra})  # fmt: skip

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True,
                              env={**self.variables, **GIT_IDENTITY}, check=check)  # fmt: skip

    def file_version(self, env: str) -> int | None:
        text = (self.environments / f"Pulumi.{env}.yaml").read_text(encoding="utf-8")
        return yaml.safe_load(text)["config"]["modelyard:serving"].get("desiredVersion")


def _seed(tmp_path: Path, environments: Path, remote: str, host_key: str | None = None) -> Path:
    """The project as its repository holds it: the program, and the test's environment files
    with git on, pushing to `remote` (pinning `host_key`)."""
    seed = tmp_path / "seed"
    (seed / "environments").mkdir(parents=True)
    for path in environments.glob("Pulumi.*.yaml"):
        text = path.read_text(encoding="utf-8")
        text = text.replace("    git:\n      enabled: false\n", "    git:\n      enabled: true\n")
        text = text.replace(SHIPPED_REMOTE, remote)
        if host_key:
            text = re.sub(r"^      hostKey: .*$", f"      hostKey: '{host_key}'", text, flags=re.M)
        (seed / "environments" / path.name).write_text(text, encoding="utf-8")
    # The program too, as the project's repository holds it: `infra diff` renders past commits.
    program = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "contracts", "infra",
                              "ml", "Pulumi.yaml"], capture_output=True, check=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(program)) as archive:
        archive.extractall(seed, filter="tar")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "the project")
    return seed


@pytest.fixture
def remote(tmp_path: Path, environments: Path, model: str) -> Iterator[GitRemote]:
    """The project's repository, served over HTTP with authentication."""
    with git_remote(tmp_path / "server", seed=_seed(tmp_path, environments, "origin")) as served:
        yield served


def _clone(tmp_path: Path, remote: GitRemote, name: str, tracking: str) -> Clone:
    variables = {
        **os.environ, **remote.auth_env(),
        "MLFLOW_TRACKING_URI": tracking,
        "MODELYARD_STATE_DIR": str(tmp_path / f"state-{name}"),
    }  # fmt: skip
    root = tmp_path / name
    subprocess.run(["git", "clone", "-q", remote.url, str(root)], env=variables, check=True)
    variables["MODELYARD_ENVIRONMENTS_DIR"] = str(root / "environments")
    return Clone(root, remote, variables)


@pytest.fixture
def agents(tmp_path: Path, remote: GitRemote, tracking: str) -> tuple[Clone, Clone]:
    return _clone(tmp_path, remote, "agent-a", tracking), _clone(
        tmp_path, remote, "agent-b", tracking
    )


def _alias(tracking: str, model: str, env: str) -> int | None:
    found = MlflowClient(tracking).get_registered_model(model).aliases
    return int(found[env]) if env in found else None


def _remote_file(remote: GitRemote, env: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote.bare), "show", f"main:environments/Pulumi.{env}.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _records(tracking: str, model: str, status: str) -> list[str]:
    return [
        run.info.run_id for run in RecordStore(Registry(tracking)).runs(model, "staging", status)
    ]


def test_a_promotion_is_one_pushed_commit_of_exactly_its_lines(
    agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, _ = agents
    version = register(0.9)
    before = a.remote.branch_log()
    done = a.cli("promote", model, "--to", "staging", "--json")
    assert done.returncode == 0, done.stderr
    log = a.remote.branch_log()
    assert len(log) == len(before) + 1
    commit, subject = log[0].split(" ", 1)
    assert subject == f"promote {model} in staging: nothing -> v{version}"
    shown = subprocess.run(["git", "--git-dir", str(a.remote.bare), "show", "--format=%B%n%an",
                            commit], capture_output=True, text=True, check=True).stdout  # fmt: skip
    [record] = history(model, "staging")
    assert f"{git_trailers.RECORD}: {record['id']}" in shown
    assert f"{git_trailers.TO}: v{version}" in shown and "modelyard\n" in shown
    # Exactly the release line, in the staging file alone.
    changed = [line for line in shown.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [f"+    desiredVersion: {version}"], shown
    # The record, the alias, the remote and this checkout say the same.
    assert record["commit"] == commit
    assert _alias(tracking, model, "staging") == version == a.file_version("staging")
    assert a.git("rev-parse", "HEAD").stdout.strip() == commit  # only an environment file moved
    assert f"desiredVersion: {version}" in _remote_file(a.remote, "staging")


def test_two_agents_promoting_different_environments_both_land_in_a_linear_history(
    agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, b = agents
    v1, v2 = register(0.90), register(0.93)
    assert a.cli("promote", model, "--to", "staging", "--version", str(v1)).returncode == 0
    # Production takes what staging serves, at once and without approvals, in this test.
    b.git("pull", "-q")
    _production_at_once(b)
    a.git("pull", "-q")
    racers = [
        a.start("promote", model, "--to", "staging", "--version", str(v2)),
        b.start("promote", model, "--to", "production"),
    ]
    results = [(p.wait(timeout=240), *p.communicate()) for p in racers]
    assert [code for code, _, _ in results] == [0, 0], results
    newest, older = (line.split(" ", 1)[1] for line in a.remote.branch_log()[:2])
    staging = f"promote {model} in staging: v{v1} -> v{v2}"
    production = {f"promote {model} in production: nothing -> v{v}": v for v in (v1, v2)}
    # Production takes what staging serves when its promotion is decided: v1, or v2 once
    # staging's promotion has landed (which of the two racers wins depends on the machine's load).
    # Either way production never runs ahead of staging's history.
    if older == staging:
        assert newest in production, (newest, older)
    else:
        assert (newest, production.get(older)) == (staging, v1), (newest, older)
    served = production[older if newest == staging else newest]
    merges = subprocess.run(["git", "--git-dir", str(a.remote.bare), "rev-list", "--merges",
                             "main"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert merges == ""  # linear
    assert f"desiredVersion: {v2}" in _remote_file(a.remote, "staging")
    assert f"desiredVersion: {served}" in _remote_file(a.remote, "production")
    assert _alias(tracking, model, "staging") == v2
    assert _alias(tracking, model, "production") == served


def _production_at_once(clone: Clone) -> None:
    """Production takes what staging serves at once and without approvals (a pushed change)."""
    production = clone.environments / "Pulumi.production.yaml"
    text = production.read_text()
    for old, new in (("soakMinutes: 60", "soakMinutes: 0"), ("required: 2", "required: 0"),
                     ("    maxDrift: 0.2\n", "")):  # fmt: skip
        text = text.replace(old, new)
    production.write_text(text)
    clone.git("commit", "-q", "-am", "production: no soak or approvals in the test")
    clone.git("push", "-q", "origin", "HEAD:main")


def test_an_auditor_reads_every_release_in_git_history_and_the_stack_diff(
    agents: tuple[Clone, Clone], register: Register, model: str
) -> None:
    """What the README's "For auditors" walks through: git log, history, infra diff."""
    a, b = agents
    _production_at_once(a)
    v1 = register(0.90)
    for args in (("promote", model, "--to", "staging"), ("promote", model, "--to", "production")):
        assert a.cli(*args).returncode == 0
    v2 = register(0.93)
    for args in (("promote", model, "--to", "staging"), ("promote", model, "--to", "production"),
                 ("rollback", model, "--env", "production", "--reason", "p99 doubled")):  # fmt: skip
        done = a.cli(*args)
        assert done.returncode == 0, done.stderr
    b.git("pull", "-q")
    releases = b.git("log", "--format=%H %s", "--grep=^Modelyard-Record:", "--",
                     "environments/Pulumi.production.yaml").stdout.splitlines()  # fmt: skip
    assert [line.split(" ", 1)[1] for line in releases] == [
        f"rollback {model} in production: v{v2} -> v{v1}",
        f"promote {model} in production: v{v1} -> v{v2}",
        f"promote {model} in production: nothing -> v{v1}",
    ]
    # `history` names each record's commit, whole, in an 80-column terminal.
    shown = b.cli("history", model, "--env", "production", COLUMNS="80").stdout
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    for line in releases:
        assert f"commit {line[:8]}" in shown
    assert "reason: p99 doubled" in shown
    # At the promotion's commit, `infra diff --base COMMIT~1` is the change it made to the stack.
    promoted = releases[1].split()[0]
    b.git("checkout", "-q", promoted)
    diff = b.cli("infra", "diff", "production", "--base", f"{promoted}~1")
    assert diff.returncode == 0, diff.stderr
    assert f"serving version: v{v1} -> v{v2}" in diff.stdout
    assert f'"models:/{model}/{v1}" => "models:/{model}/{v2}"' in diff.stdout
    assert "0 to add, 1 to change, 0 to delete" in diff.stdout


def test_a_stale_clone_takes_the_remote_file_before_it_promotes(
    agents: tuple[Clone, Clone], register: Register, model: str
) -> None:
    a, b = agents
    v1, v2 = register(0.90), register(0.93)
    assert a.cli("promote", model, "--to", "staging", "--version", str(v1)).returncode == 0
    done = b.cli("promote", model, "--to", "staging", "--version", str(v2))
    assert done.returncode == 0, done.stderr
    assert "Pulumi.staging.yaml was behind" in done.stdout
    subjects = [line.split(" ", 1)[1] for line in a.remote.branch_log()[:2]]
    assert subjects == [f"promote {model} in staging: v{v1} -> v{v2}",
                        f"promote {model} in staging: nothing -> v{v1}"]  # fmt: skip
    assert b.file_version("staging") == v2


def test_the_same_environment_from_two_agents_at_once_has_one_winner(
    agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, b = agents
    v1, v2 = register(0.90), register(0.93)
    before = len(a.remote.branch_log())
    racers = [
        clone.start(
            "promote",
            model,
            "--to",
            "staging",
            "--version",
            str(version),
            MODELYARD_LEASE_SETTLE_SECONDS="8",
        )
        for clone, version in ((a, v1), (b, v2))
    ]
    results = [(p.wait(timeout=240), *p.communicate()) for p in racers]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert "another promotion or rollback to staging" in loser and "Traceback" not in loser
    winner = _alias(tracking, model, "staging")
    assert len(a.remote.branch_log()) == before + 1
    assert f"desiredVersion: {winner}" in _remote_file(a.remote, "staging")


@pytest.mark.parametrize("fault", ["refused", "down", "no-credentials", "always-moved"])
def test_a_push_that_cannot_land_changes_nothing_and_says_why(
    fault: str, agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, _ = agents
    v1, v2 = register(0.90), register(0.93)
    assert a.cli("promote", model, "--to", "staging", "--version", str(v1)).returncode == 0
    before = a.remote.branch_log()
    file_before = (a.environments / "Pulumi.staging.yaml").read_text()
    extra: dict[str, str] = {}
    if fault == "refused":
        a.remote.refuse_pushes("environment files are protected")
    elif fault == "always-moved":
        a.remote.move_under_every_push()
    elif fault == "no-credentials":
        extra = {"GIT_CONFIG_COUNT": "0"}
    if fault == "down":
        a.remote.stop()
    done = a.cli("promote", model, "--to", "staging", "--version", str(v2), **extra)
    if fault == "down":
        a.remote.start()
    assert done.returncode == 2, done
    said = done.stderr
    assert "Traceback" not in said and a.remote.password not in said
    expected = {
        "refused": "environment files are protected",
        "down": "could not reach",
        "no-credentials": "refused the credentials, or none were given",
        "always-moved": "moved under every one of 4 pushes (each retried after a fetch)",
    }[fault]
    assert expected in said, said
    assert "nothing changed" in said or "nothing was changed" in said
    a.remote.accept_pushes()
    log = a.remote.branch_log()
    if fault == "always-moved":  # three retries: four pushes, each beaten by another commit
        assert [line.split(" ", 1)[1] for line in log[:4]] == ["another agent"] * 4
        log = log[4:]
    assert log == before
    assert (a.environments / "Pulumi.staging.yaml").read_text() == file_before
    assert _alias(tracking, model, "staging") == v1
    assert _records(tracking, model, PENDING) == []
    # Unreachable or unauthenticated: the fetch before anything fails, so no record was begun.
    assert len(_records(tracking, model, ABORTED)) == (
        0 if fault in ("down", "no-credentials") else 1
    )
    # The next attempt, with the remote back, lands.
    again = a.cli("promote", model, "--to", "staging", "--version", str(v2))
    assert again.returncode == 0, again.stderr
    assert _alias(tracking, model, "staging") == v2 == a.file_version("staging")


@pytest.mark.parametrize("step", faults.GIT_STEPS)
def test_a_killed_promotion_is_finished_by_the_next_command(
    step: str, agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, b = agents
    v1, v2, v3 = register(0.90), register(0.92), register(0.95)
    assert a.cli("promote", model, "--to", "staging", "--version", str(v1)).returncode == 0
    killed = a.start("promote", model, "--to", "staging", "--version", str(v2),
                     MODELYARD_FAULT_AT=step)  # fmt: skip
    assert killed.wait(timeout=240) == -9, killed.communicate()
    assert _alias(tracking, model, "staging") == v2  # the alias moved before the push
    pushed = any(f"-> v{v2}" in line for line in a.remote.branch_log())
    assert pushed == (step == "after-push")
    # Nothing deploys while it is pending; the message says what finishes it.
    blocked = a.cli("deploy", "staging")
    assert blocked.returncode == 2 and "was interrupted (record" in blocked.stderr, blocked.stderr
    assert f"modelyard rollback {model} --env staging" in blocked.stderr
    # Another agent's next command finishes it: the push (again, or found), then its own.
    done = b.cli("promote", model, "--to", "staging", "--version", str(v3))
    assert done.returncode == 0, done.stderr
    assert "completed it" in done.stdout and f"v{v2}" in done.stdout
    assert [r["to_version"] for r in history(model, "staging")] == [v1, v2, v3]
    subjects = [line.split(" ", 1)[1] for line in a.remote.branch_log()]
    assert sum(f"-> v{v2}" in s for s in subjects) == 1  # pushed exactly once
    assert subjects[0] == f"promote {model} in staging: v{v2} -> v{v3}"
    assert _records(tracking, model, PENDING) == []


def test_bad_git_settings_and_a_dirty_file_each_get_one_message(
    agents: tuple[Clone, Clone], register: Register, model: str, tracking: str
) -> None:
    a, _ = agents
    register(0.9)
    staging = a.environments / "Pulumi.staging.yaml"
    original = staging.read_text()
    staging.write_text(original.replace("      remote: origin\n", "      remote: upstream\n"))
    a.git("commit", "-q", "-am", "a remote that does not exist")
    unknown = a.cli("promote", model, "--to", "staging")
    assert unknown.returncode == 2
    assert "modelyard:promotion.git.remote 'upstream' is not a remote" in unknown.stderr
    a.git("reset", "-q", "--hard", "origin/main")
    staging.write_text(original.replace("replicas: 1", "replicas: 2"))
    dirty = a.cli("promote", model, "--to", "staging")
    assert dirty.returncode == 2 and "has changes that are not on" in dirty.stderr, dirty.stderr
    assert "git checkout -- environments/Pulumi.staging.yaml" in dirty.stderr
    assert _alias(tracking, model, "staging") is None
    assert _records(tracking, model, PENDING) == []


def test_a_stale_checkout_cannot_deploy_and_a_hand_edit_is_refused(
    agents: tuple[Clone, Clone], register: Register, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = agents
    version = register(0.9)
    assert a.cli("promote", model, "--to", "staging").returncode == 0
    commit = a.remote.branch_log()[0].split(" ", 1)[0]
    stale = b.cli("deploy", "staging")
    assert stale.returncode == 2, stale.stderr
    assert "this checkout is behind" in stale.stderr and commit[:12] in stale.stderr
    assert "git pull" in stale.stderr and "Traceback" not in stale.stderr
    b.git("pull", "-q")
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(b.environments))
    from modelyard.pipelines.promotion.engine import check_current

    assert check_current(load_environment("staging")) == [
        f"{model}: v{version} as {model}@staging says"
    ]
    staging = b.environments / "Pulumi.staging.yaml"
    staging.write_text(
        staging.read_text().replace(f"desiredVersion: {version}", "desiredVersion: 99")
    )
    edited = b.cli("deploy", "staging")
    assert edited.returncode == 2
    assert "no record ever served it" in edited.stderr and "modelyard promote" in edited.stderr


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    if not Path("/usr/sbin/sshd").exists():
        if os.environ.get("MODELYARD_REQUIRE_DOCKER") == "1":  # CI: .ci/run installs it
            pytest.fail("no /usr/sbin/sshd: apt-get install openssh-server")
        pytest.skip("the SSH remote test needs an OpenSSH server: apt-get install openssh-server")
    (tmp_path / "sshd").mkdir()
    server = SshServer(tmp_path / "sshd", free_port())
    yield server
    server.stop()


def test_an_ssh_remote_is_pushed_with_the_deploy_key_and_its_pinned_host_key(
    tmp_path: Path, environments: Path, model: str, register: Register, tracking: str,
    sshd: SshServer,
) -> None:  # fmt: skip
    """What Jenkins does: the deploy key bound to MODELYARD_GIT_SSH_KEY, the server's host key
    pinned in the environment file, on an agent that never met the server."""
    bare = tmp_path / "repository.git"
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{sshd.port}{bare}"
    seed = _seed(tmp_path, environments, url, sshd.known_hosts_line())
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(seed, "push", "-q", str(bare), "HEAD:refs/heads/main")
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "agent"))
    agent = tmp_path / "agent"
    variables = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "HOME": str(tmp_path / "home"),
                 "MODELYARD_ENVIRONMENTS_DIR": str(agent / "environments"),
                 "MODELYARD_STATE_DIR": str(tmp_path / "state")}  # fmt: skip

    def promote(version: int, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MODELYARD, "promote", model, "--to", "staging", "--version", str(version)],
            cwd=agent, capture_output=True, text=True, timeout=300, check=False,
            env={**variables, **extra},
        )  # fmt: skip

    v1, v2 = register(0.90), register(0.93)
    # No key: one message naming the credential, nothing changed.
    keyless = promote(v1)
    assert keyless.returncode == 2 and "refused the credentials" in keyless.stderr, keyless.stderr
    assert _alias(tracking, model, "staging") is None
    # The deploy key: the promotion is on the server, by SSH, with the host key checked.
    done = promote(v1, MODELYARD_GIT_SSH_KEY=str(sshd.client_key))
    assert done.returncode == 0, done.stderr
    log = git(tmp_path, "--git-dir", str(bare), "log", "--format=%s", "main").stdout
    assert log.splitlines()[0] == f"promote {model} in staging: nothing -> v{v1}"
    # A server whose key is not the pinned one is not pushed to.
    staging = agent / "environments" / "Pulumi.staging.yaml"
    impostor = tmp_path / "impostor_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    kind, key, *_ = (tmp_path / "impostor_ed25519.pub").read_text().split()
    staging.write_text(staging.read_text().replace(sshd.known_hosts_line(),
                                                   f"[127.0.0.1]:{sshd.port} {kind} {key}"))  # fmt: skip
    git(agent, "commit", "-q", "-am", "pin another host key")
    git(agent, "push", "-q", "origin", "HEAD:main")
    refused = promote(v2, MODELYARD_GIT_SSH_KEY=str(sshd.client_key))
    assert refused.returncode == 2, refused.stderr
    assert "SSH host key is not the one modelyard:promotion.git.hostKey pins" in refused.stderr
    assert _alias(tracking, model, "staging") == v1


def test_an_unreachable_registry_blocks_a_deploy_only_when_something_was_released(
    environments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first `pulumi up` of a stack that makes its own MLflow has nothing to check; once a
    version is released, a deploy that cannot check it against the registry does not run."""
    from modelyard.pipelines.promotion.engine import StaleCheckout, check_current

    staging = environments / "Pulumi.staging.yaml"
    staging.write_text(staging.read_text().replace("    git:\n      enabled: false\n",
                                                   "    git:\n      enabled: true\n"))  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    assert check_current(load_environment("staging")) == ["churn: nothing promoted yet"]
    staging.write_text(staging.read_text().replace("  modelyard:serving:\n",
                                                   "  modelyard:serving:\n    desiredVersion: 3\n"))  # fmt: skip
    with pytest.raises(StaleCheckout, match="released versions of churn, which cannot be checked"):
        check_current(load_environment("staging"))
