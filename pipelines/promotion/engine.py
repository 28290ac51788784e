"""Promote, roll back and read the history of a model in an environment.

A change goes through one transaction, under the environment's lock and registry lease:
  1. evaluate every rule (nothing written yet; a failure here changes nothing),
  2. write the promotion record to MLflow as `pending` (the write-ahead log),
  3. move the alias named after the environment,
  4. write desiredVersion/image into the environment file (atomic replace); with
     modelyard:promotion.git on, as a commit pushed to the remote branch (release_git.py), and
     a push that cannot land moves the alias back: nothing changed,
  5. mark the record `committed` (with the commit).
Every command first brings the checkout's file level with the remote branch (git on), then
repairs what an interrupted one left: a pending record whose commit reached the remote, or whose
alias moved, is completed (alias set, file written and pushed, record committed); one that
cannot be pushed now, or whose alias never moved, is aborted. Both are said in the command's
output and noted on the record. `check_current` is what every deploy runs first: the file must
say what the registry and the last record say, or nothing deploys.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelyard.contracts import variables
from modelyard.contracts.environment import (
    ConfigError,
    Environment,
    SecretValue,
    list_environments,
    load_environment,
)
from modelyard.contracts.state import promotion_dir
from modelyard.contracts.strategies import TWO_VERSIONS_PER_POD
from modelyard.contracts.tags import Gate, Lineage
from modelyard.contracts.versions import shown_version
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import drift, envfile, faults, locking, rules
from modelyard.pipelines.promotion.records import (
    ABORTED,
    COMMITTED,
    PENDING,
    RecordStore,
    fields,
)
from modelyard.pipelines.promotion.registry import (
    Registry,
    Version,
    tracking_uri_for,
)
from modelyard.pipelines.promotion.release_git import (
    Checkout,
    ReleaseChange,
    write_release,
)
from pydantic import BaseModel

REGISTERED = "registered"


@dataclass
class Outcome:
    """What `promote` / `rollback` decided and did; `as_dict` is the `--json` shape."""

    action: str
    promoted: bool
    model: str
    version: int | None  # None: a rollback to serving nothing
    env: str
    from_version: int | None
    gates: list[rules.Gate]
    record_id: str | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    file_change: dict[str, Any] | None = None
    commit: str | None = None  # pushed to the repository (modelyard:promotion.git)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "env": self.env,
            "from_version": self.from_version,
            "gates": [gate.as_dict() for gate in self.gates],
            "record_id": self.record_id,
            "dry_run": self.dry_run,
            "notes": self.notes,
            "env_file_change": self.file_change,
            "commit": self.commit,
        }


@dataclass
class _Target:
    environment: Environment
    registry: Registry
    store: RecordStore
    model: str

    @property
    def key(self) -> str:
        """Where the model's release keys live in the environment file."""
        return self.environment.release_key(self.model)

    @property
    def env(self) -> str:
        return self.environment.name

    @property
    def git(self) -> bool:
        return self.environment.promotion.git.enabled

    @property
    def path(self) -> Path:
        return self.environment.path


def parse_version(model: str, text: str) -> int:
    """`3`, `v3` or `models:/MODEL/3`; a version of another model is refused."""
    match = re.fullmatch(r"(?:models:/([^/@]+)/)?v?(\d+)", text.strip())
    if not match:
        raise PipelineError(f"--version {text!r}: write a version number (3) or models:/{model}/3")
    if match[1] and match[1] != model:
        raise PipelineError(
            f"version {text} belongs to model {match[1]!r}, not {model!r}: promote it as "
            f"`modelyard promote {match[1]} ...` or pick a version of {model}."
        )
    return int(match[2])


def _open(model: str, env: str) -> _Target:
    environment = load_environment(env)
    if model not in environment.served_models:
        raise PipelineError(
            f"environment {env} serves {', '.join(environment.served_models)} "
            f"({environment.path}: modelyard:training.model and modelyard:models), not "
            f"{model!r}: nothing was changed."
        )
    registry = Registry(tracking_uri_for(environment))
    registry.check_reachable()
    registry.require_model(model)
    return _Target(environment, registry, RecordStore(registry), model)


def _chain(environment: Environment) -> list[str]:
    """The environments a version may have been trained for to be promoted here: this one,
    every one upstream of it (nearest first), and the first one's `trainedFor` list."""
    chain = [environment.name]
    current = environment
    while current.promotion.source != REGISTERED:
        source = current.promotion.source
        if source in chain:
            raise ConfigError(
                f"{environment.path}: modelyard:promotion.source forms a cycle "
                f"({' <- '.join([*chain, source])}): one environment must take `registered`."
            )
        chain.append(source)
        current = load_environment(source)
    return chain + [name for name in current.promotion.trained_for if name not in chain]


def _check_eligible(target: _Target, candidate: Version) -> None:
    gate = candidate.gate
    if not gate.passed:
        raise PipelineError(
            f"{candidate.model} v{candidate.number} never passed its training gate "
            f"({gate.rule or 'no gate recorded'}, value {gate.value or 'none'}): it cannot be "
            "served anywhere."
        )
    trained_for = candidate.lineage.environment
    chain = _chain(target.environment)
    if not trained_for:
        raise PipelineError(
            f"{candidate.model} v{candidate.number} has no {Lineage.ENVIRONMENT} tag: only "
            "versions the pipeline registered can be promoted."
        )
    if trained_for not in chain:
        raise PipelineError(
            f"{candidate.model} v{candidate.number} was trained for {trained_for!r}, and "
            f"{target.env} is not downstream of it (it takes from: {' <- '.join(chain)}): "
            "nothing was changed."
        )


def _record_time(record: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(record.get("at")))
    except ValueError:
        return None


def _served_since(target: _Target, model: str, env: str, version: int) -> datetime | None:
    """When `env` last started serving `version`, from the committed records."""
    for record in reversed(target.store.history(model, env)):
        if record.get("to_version") == version:
            return _record_time(record)
    return None


def _evaluate(
    target: _Target,
    candidate: Version,
    approvers: Sequence[str],
    champion: int | None,
    now: datetime,
    source_serves: int | None,
) -> list[rules.Gate]:
    settings = target.environment.promotion_for(target.model)
    registry = target.registry
    gates = [
        rules.registered_gate(
            candidate.number,
            candidate.gate.rule or "?",
            candidate.gate.value or "?",
            candidate.gate.passed,
        )
    ]
    if settings.source != REGISTERED:
        gates.append(rules.source_gate(settings.source, candidate.number, source_serves))
    task = candidate.task
    gates += [
        rules.metric_gate(g, candidate.metrics, candidate.run_id) for g in settings.gates_for(task)
    ]
    rule = settings.champion_for(task)
    if rule is not None:
        champion_metrics = (
            registry.version(candidate.model, champion).metrics if champion is not None else {}
        )
        gates.append(rules.champion_gate(rule, rule.better_when_higher(task), candidate.metrics,
                                         champion, champion_metrics))  # fmt: skip
    if settings.max_drift is not None:
        score, detail = drift.evidence(registry, candidate, settings.source)
        gates.append(rules.drift_gate(settings.max_drift, score, detail))
    if settings.soak_minutes > 0:
        if settings.source == REGISTERED:
            since: datetime | None = datetime.fromtimestamp(candidate.created_ms / 1000, UTC)
            where = "the registry"
        else:
            since = _served_since(target, candidate.model, settings.source, candidate.number)
            where = settings.source
        gates.append(rules.soak_gate(settings.soak_minutes, since, where, now))
    if settings.approvals.required or approvers:
        gates.append(rules.approvals_gate(settings.approvals, list(approvers)))
    gates.append(rules.freeze_gate(settings.freeze, now))
    return gates


def _image_for(target: _Target, candidate: Version, image: str | None) -> str | None:
    """The serving image for the version: given, tagged by the package stage, or the one the
    source environment runs for this very version (production runs what staging tested)."""
    if image:
        return image
    if candidate.serving_image is not None:
        return candidate.serving_image.ref
    source = target.environment.promotion.source
    if source != REGISTERED:
        upstream = load_environment(source)
        theirs = envfile.read_serving(upstream.path, upstream.release_key(candidate.model))
        if theirs["desiredVersion"] == candidate.number and theirs["image"]:
            return rebase_image(str(theirs["image"]), target.environment.serving.image_repository)
    return None


def rebase_image(reference: str, repository: str) -> str:
    """The same image bytes (tag and digest) named in the target environment's repository:
    production pulls from its own registry what staging tested, by digest."""
    named, at, digest = reference.partition("@")
    name, colon, tag = named.rpartition(":")
    if not colon or "/" in tag:  # no tag: the colon was a registry port
        name, tag = named, ""
    if name == repository:
        return reference
    return f"{repository}{':' + tag if tag else ''}{at}{digest}"


def _actor() -> str:
    # Jenkins sets BUILD_USER_ID (build-user-vars plugin); elsewhere the login name.
    user = os.environ.get(variables.ACTOR) or os.environ.get("BUILD_USER_ID") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def _secrets(environment: Environment) -> list[str]:
    """Every secret the process could leak into a record: the file's and the credentials'."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretValue):
            found.append(value.ciphertext)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, BaseModel):
            walk(dict(value))

    walk(environment)
    for name, value in os.environ.items():
        if re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", name) and len(value) >= 6:
            found.append(value)
    return found


def _redact(record: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    text = json.dumps(record)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(json.dumps(secret)[1:-1], "[secret]")
    redacted: dict[str, Any] = json.loads(text)
    return redacted


def _record(
    target: _Target,
    action: str,
    model: str,
    candidate: Version | None,
    from_version: int | None,
    gates: list[rules.Gate],
    approvers: Sequence[str],
    reason: str | None,
    serving: dict[str, Any],
    change: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    environment = target.environment
    lineage = Lineage.from_tags(candidate.tags if candidate else {})
    gate = Gate.from_tags(candidate.tags if candidate else {})
    record = {
        "action": action,
        "model": model,
        "env": target.env,
        "from_version": from_version,
        "to_version": candidate.number if candidate else None,
        "at": now.isoformat(timespec="seconds"),
        "actor": _actor(),
        "approvers": list(dict.fromkeys(approvers)),
        "reason": reason,
        "source": environment.promotion.source,
        "trained_for": lineage.environment or None,
        "dataset_digest": lineage.dataset_digest or None,
        "git_commit": lineage.git_commit or None,
        "pipeline_run_id": lineage.pipeline_run_id or None,
        "trigger": lineage.reason or None,
        "model_version_run_id": candidate.run_id if candidate else None,
        "training_gate": {"rule": gate.rule or None, "value": gate.value or None},
        "metrics": candidate.metrics if candidate else {},
        "gates": [gate.as_dict() for gate in gates],
        "gates_blocking": action == "promote",
        "rollout": environment.promotion.rollout.model_dump(mode="json", by_alias=True),
        "image": serving["image"],
        "serving": serving,
        "env_file_change": {"file": _shown(environment.path), "changes": change},
        "tracking_uri": target.registry.shown_uri,
    }
    return _redact(record, _secrets(environment))


def _shown(path: Path) -> str:
    """The environment file as a reader of the repository names it."""
    resolved = path.resolve()
    with contextlib.suppress(ValueError):
        return str(resolved.relative_to(resolved.parent.parent))
    return str(resolved)


@contextlib.contextmanager
def _exclusive(target: _Target, model: str, action: str) -> Iterator[list[str]]:
    """Hold the machine lock and the registry lease, bring this checkout's file level with the
    remote branch (git on), then repair what an interrupted run left."""
    with (
        locking.machine_lock(promotion_dir(), target.env),
        locking.registry_lease(target.registry, model, target.env, action) as held,
    ):
        synced = Checkout(target.environment).sync() if target.git else []
        yield held.notes + synced + repair(target, model)


def _change(record: dict[str, Any], action: str | None = None) -> ReleaseChange:
    return ReleaseChange(
        record["model"], record["env"], action or record.get("action") or "promote",
        record.get("from_version"), record.get("to_version"), str(record.get("actor")),
        str(record.get("reason") or ""), record.get("id"),
    )  # fmt: skip


def repair(target: _Target, model: str) -> list[str]:
    """Bring record, alias, environment file and (git on) the remote branch back into agreement;
    say what was done."""
    notes = [
        f"removed {temp.name}, a half-written copy of {target.path.name} left by an "
        "interrupted write (the file itself was never partly written)"
        for temp in envfile.remove_stale_temps(target.path)
    ]
    store, registry, env = target.store, target.registry, target.env
    for run in store.runs(model, env, PENDING):
        record = store.record(run)
        to, rid = record.get("to_version"), run.info.run_id
        action = record.get("action", "promotion")
        what = f"the interrupted {action} of {model} v{to} to {env} (record {rid})"
        landed = Checkout(target.environment).commit_of_record(rid) if target.git else None
        if landed:
            # The push reached the remote: git is the truth, the registry follows it.
            registry.set_alias(model, env, to)
            note = (
                f"repaired: {what} had pushed commit {landed[:12]}; completed it: "
                f"{model}@{env} is v{to}, record committed"
            )
            store.finish(rid, COMMITTED, note, commit=landed)
        elif registry.alias(model, env) == to:
            try:
                written = write_release(
                    target.environment, target.key, _written(record), _change(record)
                )
            except PipelineError as exc:
                # It cannot land: undo what took effect, so registry and repository agree.
                registry.set_alias(model, env, record.get("from_version"))
                note = (
                    f"repaired: {what} had moved the alias but its change could not be "
                    f"committed ({exc}); aborted it: {model}@{env} is back on "
                    f"{shown_version(record.get('from_version'))}, record marked aborted"
                )
                store.finish(rid, ABORTED, note)
                notes.append(note)
                continue
            wrote = (
                f"set {target.path.name} desiredVersion to {to}"
                if written.changes
                else f"{target.path.name} already had desiredVersion {to}"
            )
            pushed = f" (commit {written.commit[:12]})" if written.commit else ""
            note = f"repaired: {what} had moved the alias; completed it: {wrote}{pushed}, record committed"
            store.finish(rid, COMMITTED, note, commit=written.commit)
        else:
            note = (
                f"repaired: {what} stopped before the alias moved, so nothing had taken effect; "
                "record marked aborted"
            )
            store.finish(rid, ABORTED, note)
        notes.append(note)
    notes += _reconcile_file(target, model)
    return notes


def _reconcile_file(target: _Target, model: str) -> list[str]:
    """The file follows the registry and the last committed record (e.g. after a repair that
    another machine made); a disagreement is fixed (a commit, git on) and said, never kept."""
    serving = target.registry.alias(model, target.env)
    history = target.store.history(model, target.env)
    if not history or history[-1].get("to_version") != serving:
        return []
    current = envfile.read_serving(target.path, target.key)
    if current["desiredVersion"] == serving:
        return []
    last = history[-1]
    written = write_release(target.environment, target.key, _written(last), _change(last, "repair"))
    pushed = f" (commit {written.commit[:12]})" if written.commit else ""
    return [
        f"repaired: {target.path.name} said desiredVersion {current['desiredVersion']} but "
        f"{model}@{target.env} and record {last['id']} say v{serving}; file updated{pushed}"
    ]


def _written(record: dict[str, Any]) -> dict[str, Any]:
    """What a record's promotion or rollback writes into the environment file."""
    written = record.get("serving")
    if isinstance(written, dict):
        return written
    return {"desiredVersion": record.get("to_version"), "image": record.get("image")}


def _serving_values(
    target: _Target, to: int | None, image: str | None, keep: int | None
) -> dict[str, Any]:
    """The file's serving keys for serving `to`; `keep`, what serves now, stays loaded beside it
    on Kubernetes where the strategy needs it: blue/green's warm standby, or the version canary,
    A/B and shadow pods answer with (the canary starting at its first step). None: one version."""
    values: dict[str, Any] = dict.fromkeys(envfile.KEYS)
    values.update(desiredVersion=to, image=image)
    environment = target.environment
    rollout = environment.promotion.rollout
    current = envfile.read_serving(target.path, target.key)
    two_versions = rollout.strategy in ("blue-green", *TWO_VERSIONS_PER_POD)
    if (
        keep is None
        or environment.serving.platform != "kubernetes"
        or not two_versions
        or current["desiredVersion"] != keep
        or not current["image"]
        or (rollout.strategy == "canary" and rollout.canary_steps[0] == 100)
    ):
        return values
    values.update(stableVersion=keep, stableImage=current["image"])
    if rollout.strategy == "canary":
        values["canaryWeight"] = rollout.canary_steps[0]
    return values


def _apply(target: _Target, record: dict[str, Any]) -> tuple[str, str | None]:
    """Steps 2-5 of the transaction; the record id and the commit pushed (git on)."""
    model, env, to = record["model"], record["env"], record["to_version"]
    store, registry = target.store, target.registry
    record_id = store.begin(record)
    faults.hit("after-record")
    try:
        registry.set_alias(model, env, to)
    except PipelineError as exc:
        with contextlib.suppress(PipelineError):
            store.finish(record_id, ABORTED, f"the alias could not be moved: {exc}")
        raise PipelineError(f"{exc}; the promotion was aborted and nothing changed") from None
    faults.hit("after-alias")
    try:
        written = write_release(target.environment, target.key, _written(record), _change(record))
    except (OSError, PipelineError) as exc:
        # Undo the alias so registry, file and repository agree; a crash is `repair`'s.
        registry.set_alias(model, env, record["from_version"])
        store.finish(record_id, ABORTED, f"the release could not be written: {exc}")
        where = "" if isinstance(exc, PipelineError) else f"{target.path}: could not be written: "
        raise PipelineError(
            f"{where}{exc}; the alias moved back and the record is aborted: nothing changed"
        ) from None
    faults.hit("after-file")
    store.finish(record_id, COMMITTED, commit=written.commit)
    return record_id, written.commit


def promote(
    model: str,
    to_env: str,
    version: str | None = None,
    approvers: Sequence[str] = (),
    dry_run: bool = False,
    image: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Evaluate `to_env`'s rules for a version and, when all pass, make the environment serve it."""
    target = _open(model, to_env)
    lock: contextlib.AbstractContextManager[list[str]] = (
        contextlib.nullcontext([]) if dry_run else _exclusive(target, model, "promote")
    )
    with lock as notes:
        if dry_run and target.store.runs(model, to_env, PENDING):
            notes.append(
                f"an interrupted promotion to {to_env} is pending: the next promote or rollback "
                "repairs it"
            )
        serves = _source_serves(target, model)
        number = parse_version(model, version) if version else _default_candidate(target, serves)
        candidate = target.registry.version(model, number)
        _check_eligible(target, candidate)
        champion = target.registry.alias(model, to_env)
        if champion == candidate.number:
            # Say what a repair just did too: re-running a killed promote lands here.
            said = "".join(f"{note}\n" for note in notes)
            raise PipelineError(f"{said}{to_env} already serves {model} v{number}: nothing to do.")
        now = now or datetime.now(UTC)
        gates = _evaluate(target, candidate, approvers, champion, now, serves)
        outcome = Outcome("promote", False, model, number, to_env, champion, gates, notes=notes)
        outcome.dry_run = dry_run
        if dry_run or not all(gate.passed for gate in gates):
            return outcome
        chosen = _image_for(target, candidate, image)
        values = _serving_values(target, number, chosen, champion)
        _, new_text, change = envfile.render(target.path, values, target.key)
        envfile.validate_text(target.path, new_text)
        record = _record(
            target,
            "promote",
            model,
            candidate,
            champion,
            gates,
            approvers,
            None,
            values,
            change,
            now,
        )
        outcome.record_id, outcome.commit = _apply(target, record)
        outcome.promoted = True
        outcome.file_change = record["env_file_change"]
        return outcome


def _source_serves(target: _Target, model: str) -> int | None:
    """What the environment's source serves now (None: nothing, or promotions take registered
    versions), read once per decision: the version chosen from it and its source gate must see
    the same moment, or a source promoted in between refuses the version just chosen."""
    source = target.environment.promotion_for(model).source
    return None if source == REGISTERED else target.registry.alias(model, source)


def _default_candidate(target: _Target, serves: int | None) -> int:
    """No --version: what the source environment serves (`serves`), or the newest eligible
    registration."""
    model = target.model
    source = target.environment.promotion_for(model).source
    if source != REGISTERED:
        if serves is None:
            raise PipelineError(
                f"{source} serves no version of {model} yet, so there is nothing to promote to "
                f"{target.env}: promote to {source} first."
            )
        return serves
    chain = _chain(target.environment)
    for number in reversed(target.registry.versions(model)):
        found = target.registry.version(model, number)
        if found.gate.passed and found.lineage.environment in chain:
            return number
    raise PipelineError(
        f"no version of {model} registered for {target.env} passed its training gate: run the "
        "pipeline, or name one with --version."
    )


def rollback(
    model: str,
    env: str,
    to_version: str | None = None,
    reason: str = "",
    approvers: Sequence[str] = (),
    now: datetime | None = None,
) -> Outcome:
    """Serve an earlier version again; allowed in a freeze; gates reported, never blocking."""
    if not reason.strip():
        raise PipelineError("a rollback needs --reason TEXT: the record must say why.")
    target = _open(model, env)
    with _exclusive(target, model, "rollback") as notes:
        current = target.registry.alias(model, env)
        if current is None:
            raise PipelineError(f"{env} serves no version of {model}: nothing to roll back.")
        history = target.store.history(model, env)
        served = [r.get("to_version") for r in history]
        number: int | None
        if to_version:
            number = parse_version(model, to_version)
            if number == current:
                raise PipelineError(f"{env} already serves {model} v{number}.")
            if number not in served:
                raise PipelineError(
                    f"{env} never served {model} v{number} (it served: "
                    f"{', '.join(f'v{v}' for v in dict.fromkeys(served)) or 'nothing on record'}): "
                    "a rollback returns to a known version; use `modelyard promote` for a new one."
                )
        else:
            number = _previous(history, current, env, model)
        now = now or datetime.now(UTC)
        # Back to serving nothing: no rule applies.
        candidate: Version | None = None
        gates: list[rules.Gate] = []
        image: str | None = None
        if number is not None:
            candidate = target.registry.version(model, number)
            if not candidate.gate.passed:
                raise PipelineError(f"{model} v{number} never passed its training gate.")
            gates = _evaluate(target, candidate, approvers, current, now,
                              _source_serves(target, model))  # fmt: skip
            image = _last_image(history, number)
        values = _serving_values(target, number, image, None)
        _, new_text, change = envfile.render(target.path, values, target.key)
        envfile.validate_text(target.path, new_text)
        record = _record(
            target,
            "rollback",
            model,
            candidate,
            current,
            gates,
            approvers,
            reason,
            values,
            change,
            now,
        )
        outcome = Outcome("rollback", True, model, number, env, current, gates, notes=notes)
        outcome.record_id, outcome.commit = _apply(target, record)
        outcome.file_change = record["env_file_change"]
        return outcome


def _previous(history: list[dict[str, Any]], current: int, env: str, model: str) -> int | None:
    """The last version served before the current one that was never rolled back from (a
    version that was rolled back is known bad, so a second rollback goes further back); None
    when the environment served nothing before its first promotion on record (a failed first
    deploy rolls back to not serving, which the model server reports as not ready)."""
    bad = {r.get("from_version") for r in history if r.get("action") == "rollback"}
    for record in reversed(history):
        for version in (record.get("to_version"), record.get("from_version")):
            if isinstance(version, int) and version != current and version not in bad:
                return version
    if history and history[0].get("from_version") is None:
        return None
    raise PipelineError(
        f"{env} has no earlier good version of {model} on record to roll back to: "
        "name one with --to-version."
    )


def _last_image(history: list[dict[str, Any]], version: int) -> str | None:
    for record in reversed(history):
        if record.get("to_version") == version:
            image = record.get("image")
            return str(image) if image else None
    return None


def history(model: str, env: str | None = None) -> list[dict[str, Any]]:
    """Every promotion and rollback that took effect, oldest first (for `modelyard history`)."""
    environment = load_environment(env) if env else _any_environment_of(model)
    registry = Registry(tracking_uri_for(environment))
    registry.check_reachable()
    registry.require_model(model)
    return RecordStore(registry).history(model, env)


def served_at(model: str, env: str, when: datetime) -> dict[str, Any] | None:
    """The record in effect in `env` at `when`: what served then, and why (None: nothing yet)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # times in records and on the command line are UTC
    current = None
    for record in history(model, env):
        started = _record_time(record)
        if started is not None and started <= when:
            current = record
    return current


def _any_environment_of(model: str) -> Environment:
    """The registry to read when no environment is named: any environment serving the model."""
    broken: list[str] = []
    for name in list_environments():
        try:
            environment = load_environment(name)
        except ConfigError as exc:
            broken.append(str(exc).splitlines()[0])
            continue
        if model in environment.served_models:
            return environment
    unreadable = f" (unreadable: {'; '.join(broken)})" if broken else ""
    raise PipelineError(
        f"no environment file serves model {model!r}{unreadable}: name one with --env."
    )


def write_rollout_step(model: str, env: str, wanted: dict[str, Any], description: str) -> list[str]:
    """A rollout step (a canary's next weight, its end) written like a promotion: under the lock,
    a commit pushed with git on, and noted on the record it continues; what was done."""
    target = _open(model, env)
    with _exclusive(target, model, "rollout step") as notes:
        history = target.store.history(model, env)
        last = history[-1] if history else None
        serving = target.registry.alias(model, env)
        change = ReleaseChange(
            model, env, "canary-step", serving, serving, _actor(), description,
            last["id"] if last else None,
        )  # fmt: skip
        written = write_release(target.environment, target.key, wanted, change)
        if last is not None:
            release = {**(last.get("release") or {}), **wanted}
            target.store.step(str(last["id"]), release, written.commit)
        pushed = f" (commit {written.commit[:12]})" if written.commit else ""
        return [*notes, f"{env}: {description}{pushed}"]


class StaleCheckout(PipelineError):
    """The environment file disagrees with the registry and the promotion records."""


def check_current(environment: Environment) -> list[str]:
    """Refuse to deploy from a file whose release keys disagree with what the registry and the
    last committed promotion record say (git on: the repository is the record of what serves).
    Returns a line per model checked; raises StaleCheckout naming the commit to pull."""
    if not environment.promotion.git.enabled:
        return []
    registry = Registry(tracking_uri_for(environment))
    try:
        registry.check_reachable()
    except PipelineError as exc:
        released = [m for m in environment.served_models if environment.release(m).desired_version]
        if not released:
            # The first `up` of a stack that makes its own MLflow: nothing promoted to check.
            return [f"{model}: nothing promoted yet" for model in environment.served_models]
        raise StaleCheckout(
            f"{environment.path} names released versions of {', '.join(released)}, which cannot "
            f"be checked against the registry, so nothing was deployed: {exc}"
        ) from None
    store = RecordStore(registry)
    lines: list[str] = []
    problems: list[str] = []
    for model in environment.served_models:
        key = environment.release_key(model)
        file = envfile.read_serving(environment.path, key)
        serving = registry.alias(model, environment.name)
        pending = store.runs(model, environment.name, PENDING)
        history = store.history(model, environment.name)
        last = history[-1] if history else None
        expected = dict.fromkeys(envfile.KEYS)
        if last is not None:  # the keys as the last record (or its last rollout step) wrote them
            expected.update(last.get("release") or _written(last))
        if pending:
            problems.append(
                f"{model}: a {fields(pending[0]).get('action') or 'promotion'} "
                f"to {environment.name} was interrupted (record {pending[0].info.run_id}): the next "
                f"`modelyard promote` or `modelyard rollback {model} --env {environment.name}` "
                "finishes or aborts it"
            )
            continue
        if file["desiredVersion"] == serving and (last is None or _same(file, expected)):
            lines.append(f"{model}: {shown_version(serving)} as {model}@{environment.name} says")
            continue
        differences = (
            ", ".join(
                f"{name} {file[name]!r} (record: {expected[name]!r})"
                for name in envfile.KEYS
                if file[name] != expected[name]
            )
            or f"desiredVersion {file['desiredVersion']!r} ({model}@{environment.name}: {serving!r})"
        )
        served = {r.get("to_version") for r in history} | {r.get("from_version") for r in history}
        if file["desiredVersion"] not in served | {serving}:
            problems.append(
                f"{model}: {environment.path.name} says desiredVersion {file['desiredVersion']} "
                f"but {model}@{environment.name} is {shown_version(serving)} and no record ever "
                f"served it (a hand edit?): change what serves with `modelyard promote {model} "
                f"--to {environment.name}`, never by editing release keys"
            )
        else:
            where = f"commit {last['commit'][:12]}" if last and last.get("commit") else "the remote"
            problems.append(
                f"{model}: this checkout is behind: {differences}; `git pull` to take {where} "
                f"(record {last['id'] if last else '?'})"
            )
    if problems:
        raise StaleCheckout(
            f"{environment.path} does not say what {environment.name} serves, so nothing was "
            "deployed: " + "; ".join(problems)
        )
    return lines


def _same(file: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(
        file[name] == expected[name] for name in envfile.KEYS if name != "canaryWeight"
    ) and ((file["canaryWeight"] or 100) == (expected["canaryWeight"] or 100))
