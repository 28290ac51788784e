"""Release keys written as commits pushed to the repository (`modelyard:promotion.git`).

With git on, every write of a served model's release keys (a promotion, a rollback, a repair, a
canary step, an automatic rollback) is one commit on the remote branch, changing exactly those
lines of the environment file, made the way Kargo and Flux's image automation make theirs:
- the commit is built on the remote branch's tip (fetched into `refs/modelyard/ENV`), not on
  whatever this checkout has checked out, from a private index: the checkout's own index, branch
  and other files are never touched, so a Jenkins workspace at any commit can promote;
- a push refused because the branch moved is retried: fetch, apply the same keys to the file as
  the new tip has it (other environments' files, and other keys of this one, as they are), push.
  When the new tip changed the very keys being written, that is a real conflict: nothing is pushed;
- once pushed, the checkout takes the commit: fast-forwarded when only environment files lie
  between (code never moves under a running build), otherwise the file alone is written.
Without git (`make demo`'s copies, the `local` file) the file is written in place, as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.contracts import git_trailers
from modelyard.contracts import variables as names
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.environment import Environment
from modelyard.contracts.versions import shown_version
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import envfile, faults

GIT_TIMEOUT_SECONDS = 120
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "cannot lock ref")
_AUTH = ("authentication failed", "could not read username", "permission denied (publickey",
         "access denied", "http basic", "returned error: 401", "returned error: 403",
         "terminal prompts disabled", "invalid username or password")  # fmt: skip
_DOWN = ("could not resolve host", "connection refused", "failed to connect", "timed out",
         "unable to access", "could not read from remote repository", "connection reset",
         "does not appear to be a git repository", "no such file or directory")  # fmt: skip


@dataclass(frozen=True)
class ReleaseChange:
    """Who changes what a model serves in an environment, and why: the commit's message."""

    model: str
    env: str
    action: str  # promote, rollback, repair, canary-step
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str = ""
    record_id: str | None = None

    def message(self, changes: list[dict[str, Any]]) -> str:
        subject = (
            f"{self.action} {self.model} in {self.env}: "
            f"{shown_version(self.from_version)} -> {shown_version(self.to_version)}"
        )
        body = [f"{change['key']}: {change['from']} -> {change['to']}" for change in changes]
        if self.reason:
            body.append(f"reason: {self.reason}")
        trailers = {
            git_trailers.RECORD: self.record_id or "none",
            git_trailers.MODEL: self.model,
            git_trailers.ENVIRONMENT: self.env,
            git_trailers.ACTION: self.action,
            git_trailers.FROM: shown_version(self.from_version),
            git_trailers.TO: shown_version(self.to_version),
            git_trailers.ACTOR: self.actor,
        }
        lines = [subject, "", *body, "", *(f"{key}: {value}" for key, value in trailers.items())]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Written:
    """What a write of release keys did: the keys changed and the commit pushed (None: no git)."""

    changes: list[dict[str, Any]]
    commit: str | None = None


def write_release(
    environment: Environment, key: str, wanted: Mapping[str, Any], change: ReleaseChange
) -> Written:
    """Set the release keys `wanted` under `key`: a pushed commit with git on, else the file."""
    if not environment.promotion.git.enabled:
        return Written(envfile.set_serving(environment.path, wanted, key))
    checkout = Checkout(environment)
    current = envfile.read_serving(environment.path, key)  # parsed once, not once per key
    expected = {name: current[name] for name in wanted}
    changes: list[dict[str, Any]] = []

    def render(text: str, tip: str) -> str:
        found = envfile.read_serving_text(text, key)
        moved = {name: found[name] for name in wanted if found[name] != expected[name]}
        if moved:
            raise PipelineError(
                f"{checkout.remote_shown} {checkout.branch} changed {', '.join(sorted(moved))} "
                f"of {checkout.relpath} under {key} while this command ran (commit "
                f"{checkout.describe(tip)}): a real conflict, so nothing was pushed. Run the "
                "command again: it starts from the remote's file."
            )
        _, new, found_changes = envfile.render_text(text, wanted, key, environment.path)
        envfile.validate_text(environment.path, new)
        changes[:] = found_changes
        return new

    commit = checkout.publish(render, lambda: change.message(changes))
    return Written(list(changes), commit)


class Checkout:
    """The git checkout an environment file lives in, and the remote branch it is pushed to."""

    def __init__(self, environment: Environment) -> None:
        settings = environment.promotion.git
        self.env = environment.name
        self.path = environment.path.resolve()
        self.branch = settings.branch
        self.retries = settings.push_retries
        self.author = (settings.author_name, settings.author_email)
        self.tip_ref = f"refs/modelyard/{self.env}"
        # Fail, never wait for a passphrase or a yes (a team's own GIT_SSH_COMMAND kept).
        self.ssh = os.environ.get("GIT_SSH_COMMAND", "ssh") + " -o BatchMode=yes"
        key = os.environ.get(names.GIT_SSH_KEY)
        if key:
            self.ssh += f" -i {shlex.quote(key)} -o IdentitiesOnly=yes"
        found = self._git("rev-parse", "--show-toplevel", cwd=self.path.parent, check=False)
        if found.returncode != 0:
            raise PipelineError(
                f"{self.path}: modelyard:promotion.git.enabled is true but {self.path.parent} is "
                "not in a git repository, so a promotion could not be committed: work in a clone "
                "of the project, or set modelyard:promotion.git.enabled: false; nothing was changed."
            )
        self.root = Path(found.stdout.strip())
        self.relpath = self.path.relative_to(self.root.resolve()).as_posix()
        self.remote = self._remote(settings.remote)
        self.remote_shown = _redact(settings.remote)
        if settings.host_key:
            known = Path(self._git("rev-parse", "--absolute-git-dir").stdout.strip())
            known /= f"modelyard-known-hosts-{self.env}"
            known.write_text(settings.host_key + "\n", encoding="utf-8")
            self.ssh += (
                f" -o StrictHostKeyChecking=yes -o UserKnownHostsFile={shlex.quote(str(known))}"
            )

    def _remote(self, remote: str) -> str:
        """A remote's name as git knows it, or a URL or path as given."""
        if re.search(r"[:/\\]", remote):
            return remote
        if self._git("remote", "get-url", remote, check=False).returncode != 0:
            names = self._git("remote", check=False).stdout.split()
            raise PipelineError(
                f"{self.path}: modelyard:promotion.git.remote {remote!r} is not a remote of "
                f"{self.root} (it has: {', '.join(names) or 'none'}): add it (`git remote add "
                f"{remote} URL`) or write the URL there; nothing was changed."
            )
        return remote

    def _git(
        self, *args: str, cwd: Path | None = None, check: bool = True, stdin: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        variables = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(extra or {})}
        variables["GIT_SSH_COMMAND"] = self.ssh
        done = subprocess.run(
            ["git", *args], cwd=cwd or self.root, input=stdin, capture_output=True, text=True,
            env=variables, timeout=GIT_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise PipelineError(
                f"git {args[0]} in {cwd or self.root} failed: {_redact(done.stderr.strip())}"
            )
        return done

    def describe(self, commit: str) -> str:
        return self._git("log", "-1", "--format=%h (%s)", commit, check=False).stdout.strip()

    def fetch(self) -> str:
        """The remote branch's tip, fetched into refs/modelyard/ENV."""
        done = self._git(
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.remote,
            f"+refs/heads/{self.branch}:{self.tip_ref}", check=False,
        )  # fmt: skip
        if done.returncode != 0:
            if "couldn't find remote ref" in done.stderr.lower():
                raise PipelineError(
                    f"branch {self.branch} (modelyard:promotion.git.branch) does not exist on "
                    f"{self.remote_shown}: push the project there first; nothing was changed."
                )
            raise PipelineError(self._failure("fetch from", done.stderr))
        return self._git("rev-parse", self.tip_ref).stdout.strip()

    def file_at(self, commit: str) -> str | None:
        shown = self._git("show", f"{commit}:{self.relpath}", check=False)
        return shown.stdout if shown.returncode == 0 else None

    def sync(self) -> list[str]:
        """Before a write: this checkout's file must be the remote's. A file that is only behind
        takes the remote's version (said); one with edits of its own is refused."""
        try:
            tip = self.fetch()
        except PipelineError as exc:
            raise PipelineError(f"{exc}; nothing was changed.") from None
        remote_text = self._require_file(tip)
        local = self.path.read_text(encoding="utf-8")
        if local == remote_text:
            return []
        if local != self.file_at("HEAD"):
            raise PipelineError(
                f"{self.relpath} has changes that are not on {self.remote_shown} {self.branch} "
                f"(a hand edit in {self.root}): commit and push them (`git commit {self.relpath} "
                f"&& git push`), or drop them (`git checkout -- {self.relpath}`); nothing was "
                "changed."
            )
        self._take(tip, remote_text)
        return [
            f"{self.relpath} was behind {self.remote_shown} {self.branch}: took its version "
            f"(last changed by {self.describe(self._last_change(tip))})"
        ]

    def _last_change(self, commit: str) -> str:
        return self._git("log", "-1", "--format=%H", commit, "--", self.relpath).stdout.strip()

    def _require_file(self, tip: str) -> str:
        text = self.file_at(tip)
        if text is None:
            raise PipelineError(
                f"{self.relpath} is not on {self.remote_shown} {self.branch}: commit and push it "
                "before promoting to this environment; nothing was changed."
            )
        return text

    def publish(self, render: Callable[[str, str], str], message: Callable[[], str]) -> str | None:
        """Commit the file as `render` makes it from the remote tip's version and push it;
        the commit (None when the file there already says so). Retried when the branch moved."""
        attempts = self.retries + 1
        for _ in range(attempts):
            tip = self.fetch()
            base = self._require_file(tip)
            new = render(base, tip)
            if new == base:
                self._take(tip, base)
                return None
            commit = self._commit(tip, new, message())
            faults.hit("before-push")
            pushed = self._git(
                "push", "--porcelain", self.remote, f"{commit}:refs/heads/{self.branch}",
                check=False,
            )  # fmt: skip
            if pushed.returncode == 0:
                faults.hit("after-push")
                # The push was the point of no return: a checkout that cannot take the commit
                # now (a full disk) is brought level by the next command's sync.
                with contextlib.suppress(OSError, PipelineError):
                    self._take(commit, new)
                return commit
            said = (pushed.stdout + pushed.stderr).lower()
            if not any(word in said for word in _REJECTED) or "hook declined" in said:
                raise PipelineError(self._failure("push to", pushed.stderr + pushed.stdout))
        raise PipelineError(
            f"{self.remote_shown} {self.branch} moved under every one of {attempts} pushes "
            "(each retried after a fetch): nothing was pushed. Run the command again when the "
            "branch is quiet."
        )

    def _commit(self, parent: str, text: str, message: str) -> str:
        blob = self._git("hash-object", "-w", "--stdin", stdin=text).stdout.strip()
        name, email = self.author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            index = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
            self._git("read-tree", parent, extra=index)
            self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{self.relpath}",
                      extra=index)  # fmt: skip
            tree = self._git("write-tree", extra=index).stdout.strip()
        return self._git("commit-tree", tree, "-p", parent, "-F", "-", stdin=message,
                         extra=identity).stdout.strip()  # fmt: skip

    def _take(self, commit: str, text: str) -> None:
        """The checkout takes `commit`'s file: HEAD fast-forwards when only environment files
        change on the way, else the file alone is written (its diff against HEAD is the commit's)."""
        if self.path.read_text(encoding="utf-8") == text:
            return
        head = self._git("rev-parse", "--verify", "--quiet", "HEAD", check=False).stdout.strip()
        folder = self.relpath.rpartition("/")[0]
        if (
            head
            and self._git("merge-base", "--is-ancestor", head, commit, check=False).returncode == 0
        ):
            between = self._git("diff", "--name-only", head, commit).stdout.split()
            if all(path.rpartition("/")[0] == folder for path in between):
                with contextlib.suppress(PipelineError):
                    self._git("merge", "--ff-only", "--quiet", commit)
        if self.path.read_text(encoding="utf-8") != text:
            write_atomic(self.path, text)

    def commit_of_record(self, record_id: str) -> str | None:
        """The commit on the remote branch that carries the record (did its push land?)."""
        tip = self.fetch()
        found = self._git(
            "log", "-1", "--format=%H", f"--grep=^{git_trailers.RECORD}: {record_id}$", tip,
            "--", self.relpath,
        )  # fmt: skip
        return found.stdout.strip() or None

    def _failure(self, doing: str, stderr: str) -> str:
        said = stderr.lower()
        detail = " / ".join(line.strip() for line in _redact(stderr).splitlines() if line.strip())[
            -600:
        ]
        where = f"{self.remote_shown} ({self.branch})"
        if "hook declined" in said or "pre-receive" in said:
            return f"{where} refused the push: {detail}"
        if "host key verification failed" in said:
            return (
                f"git could not {doing.split()[0]} {where}: the server's SSH host key is not the "
                "one modelyard:promotion.git.hostKey pins (or, with none pinned, not in "
                "known_hosts): compare it with `ssh-keyscan HOST` through a channel you trust, "
                "and set hostKey to that line."
            )
        if any(word in said for word in _AUTH):
            return (
                f"git could not {doing.split()[0]} {where}: the remote refused the credentials, "
                "or none were given. Give git a credential for it: on Jenkins the promote and "
                "deploy stages bind `modelyard-git` (withCredentials, pipelines/Jenkinsfile); by "
                "hand, an SSH key or a git credential helper."
            )
        if any(word in said for word in _DOWN):
            return f"git could not reach {where} to {doing.split()[0]}: {detail}"
        return f"git {doing} {where} failed: {detail}"


def _redact(text: str) -> str:
    """Credentials a URL may carry (https://user:token@host) never reach a message."""
    return re.sub(r"//[^/@\s]+@", "//[secret]@", text)
