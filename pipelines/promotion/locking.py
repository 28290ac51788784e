"""One promotion or rollback per environment at a time, on one machine and across machines.

Two layers, because MLflow has no compare-and-set on aliases:
1. An OS lock (flock, non-blocking) on `<state>/locks/ENV.lock`: processes sharing a checkout
   are serialised by the kernel, which also releases it when a holder is killed (-9 included).
2. A lease in the registry, a tag `modelyard.lease.ENV` on the registered model, for machines
   that do not share a disk: read it, write ours, wait SETTLE seconds, read it back. A rival that
   read the tag before our write writes within one round trip of it, so after SETTLE the later
   writer owns the tag and the earlier one sees it and backs off. A lease whose holder process is
   gone (same host) or whose time is up (other hosts) is taken over, and the take-over is said.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from modelyard.contracts import variables
from modelyard.contracts.tags import lease_tag
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.processes import is_alive
from modelyard.pipelines.promotion.registry import Registry

LEASE_TTL_SECONDS = 15 * 60
SETTLE_SECONDS = float(os.environ.get(variables.LEASE_SETTLE_SECONDS, "0.75"))


@dataclass
class Held:
    notes: list[str]  # what taking the lock found and did (a stale lease taken over...)


@contextlib.contextmanager
def machine_lock(state_dir: Path, env: str) -> Iterator[None]:
    folder = state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{env}.lock"
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PipelineError(
                f"another promotion or rollback to {env} is running on this machine ({holder}); "
                "nothing was changed. Wait for it to finish, then check `modelyard history`."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_lease(registry: Registry, model: str, env: str) -> dict[str, object] | None:
    tags = registry.require_model(model)
    raw = tags.get(lease_tag(env))
    if not raw:
        return None
    try:
        lease = json.loads(raw)
    except ValueError:
        return {"token": raw, "host": "?", "pid": 0, "expires": 0}
    return lease if isinstance(lease, dict) else None


def _stale(lease: dict[str, object]) -> str | None:
    """Why a lease no longer protects anything, or None when its holder may still be working."""
    host, pid = lease.get("host"), lease.get("pid")
    if host == socket.gethostname() and isinstance(pid, int) and not is_alive(pid):
        return f"its holder (pid {pid} on this host) is no longer running"
    expires = lease.get("expires")
    if isinstance(expires, int | float) and expires < time.time():
        return f"it expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires))}"
    return None


def _describe(lease: dict[str, object]) -> str:
    since = lease.get("since")
    when = "?"
    if isinstance(since, int | float):
        when = time.strftime("%H:%M:%S UTC", time.gmtime(since))
    action = lease.get("action", "a promotion")
    return f"{action} by pid {lease.get('pid')} on {lease.get('host')} since {when}"


@contextlib.contextmanager
def registry_lease(registry: Registry, model: str, env: str, action: str) -> Iterator[Held]:
    held = Held(notes=[])
    current = _read_lease(registry, model, env)
    if current is not None:
        why = _stale(current)
        if why is None:
            raise PipelineError(
                f"another promotion or rollback to {env} holds the registry lease "
                f"({_describe(current)}); nothing was changed. Wait for it to finish."
            )
        held.notes.append(f"took over a stale promotion lease on {env}: {why}")
    token = uuid.uuid4().hex
    mine = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "action": action,
        "since": time.time(),
        "expires": time.time() + LEASE_TTL_SECONDS,
    }

    def write() -> None:
        try:
            registry.client.set_registered_model_tag(model, lease_tag(env), json.dumps(mine))
        except MlflowException as exc:
            # Two first writers at once: the database keeps the other's row and refuses ours.
            # That is losing the race, told as such below, not an MLflow failure.
            if "UNIQUE constraint" not in str(exc.message):
                raise

    registry.call(f"write the promotion lease on {model}", write)
    time.sleep(SETTLE_SECONDS)
    winner = _read_lease(registry, model, env)
    if winner is None or winner.get("token") != token:
        raise PipelineError(
            f"another promotion or rollback to {env} started at the same moment and won the "
            f"registry lease ({_describe(winner or {})}); nothing was changed."
        )
    try:
        yield held
    finally:
        # Release only our own lease; never fail the command over it (it expires by itself).
        with contextlib.suppress(MlflowException, PipelineError, OSError):
            still = _read_lease(registry, model, env)
            if still is not None and still.get("token") == token:
                registry.client.delete_registered_model_tag(model, lease_tag(env))
