"""Local deploy (the embedded default): each environment served by a model-server process on
127.0.0.1 at its `serving.localPort`, replaced blue/green: the new server binds the same port
(SO_REUSEPORT), and only once it is loaded and answering does the old one drain and stop.

State lives under `.modelyard/serving/ENV/` (deploy.json, one folder per slot, logs, samples)
for training.model, under `.modelyard/serving-models/ENV/NAME/` for each model of
`modelyard:models`, which is served on its own port and deployed on its own.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from modelyard.contracts import state, variables
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.environment import Environment, load_environment, secret_env_var
from modelyard.contracts.serving_options import auth_files, server_variables
from modelyard.ml.serving.__main__ import options_from_environment, options_to_json
from modelyard.ml.serving.source import NoModelYet, resolve
from modelyard.ml.serving.supervisor import ServeOptions, read_status
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.processes import is_alive


@dataclass(frozen=True)
class Deployment:
    environment: str
    url: str
    version: str
    pid: int
    slot: str
    changed: bool
    message: str


def use_tracking_of(env: Environment) -> None:
    """MLflow's own variable wins (Jenkins, tests); otherwise the environment file's server."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = env.mlflow.tracking_uri


def serving_dir(environment: str, model: str | None = None) -> Path:
    """A served model's state folder: None (training.model) is the environment's own."""
    return state.serving_dir(environment) if model is None else state.model_serving_dir(
        environment, model)  # fmt: skip


def other_model(env: Environment, model: str | None) -> str | None:
    """`--model` of a command: None for training.model, else a model of `modelyard:models`.
    One message when the environment does not serve it."""
    model = model or env.served_model
    env.release(model)
    return None if model == env.served_model else model


def _folder(env: Environment, model: str) -> Path:
    return serving_dir(env.name, None if model == env.served_model else model)


def serve_options(
    env: Environment,
    model_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    state: Path | None = None,
    workers: int = 2,
    poll_seconds: float = 10.0,
    model: str | None = None,
) -> ServeOptions:
    """Everything the server needs, read from the environment file through the same mapping
    a container or a pod gets (contracts/serving_options.py). A server following the
    environment's alias makes its automatic rollbacks durable with `modelyard rollback`.
    `model`: one of the environment's served models (default: training.model)."""
    model = model or env.served_model
    alias = env.alias_of(model)
    follows = model_uri is None or model_uri == alias
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    rollback = [modelyard, "rollback", model, "--env", env.name] if follows else []
    tokens = _token_folder(env, _folder(env, model) / "auth")
    return options_from_environment({
        **server_variables(env),
        **({variables.AUTH_DIR: str(tokens)} if tokens else {}),
        variables.MODEL_URI: model_uri or alias,
        variables.HOST: host,
        variables.PORT: str(port or env.local_port(model)),
        variables.STATE_DIR: str(state or _folder(env, model) / "foreground"),
        variables.WORKERS: str(workers),
        variables.POLL_SECONDS: repr(poll_seconds),
        variables.ROLLBACK_COMMAND: orjson.dumps(rollback).decode(),
    })  # fmt: skip


def _token_folder(env: Environment, folder: Path) -> Path | None:
    """A local server's bearer tokens (modelyard:serving.auth), written as 0400 files from the
    variables that carry the secrets' values (secret_env_var); None when serving is open."""
    carriers = {
        name: secret_env_var("serving." + ".".join(path)) for name, path in auth_files(env).items()
    }
    missing = [variable for variable in carriers.values() if not os.environ.get(variable)]
    if missing:
        raise PipelineError(
            f"{env.path}: modelyard:serving.auth is set, so the local server needs each token's "
            f"value: set {', '.join(missing)} (or remove modelyard:serving.auth to serve openly)"
        )
    if not carriers:
        return None
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, variable in carriers.items():
        write_atomic(folder / name, os.environ[variable])
        (folder / name).chmod(0o400)
    for stale in {p.name for p in folder.iterdir()} - set(carriers):
        (folder / stale).unlink()  # a token removed from the file stops working
    return folder


def _record(folder: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads((folder / "deploy.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def deploy(
    environment: str,
    port: int | None = None,
    timeout: float = 120.0,
    poll_seconds: float = 5.0,
    replace: bool = False,
    model: str | None = None,
) -> Deployment:
    """Bring the environment's local serving of `model` (default: training.model) up to date,
    blue/green. Each model has its own server, port and state; deploying one leaves the others.

    A running server already follows the alias by itself; it is replaced when it is not
    serving the alias's version, when the environment's serving settings changed since it
    started, or when `replace` asks for it (e.g. after upgrading the kit)."""
    env = load_environment(environment)
    model = model or env.served_model
    use_tracking_of(env)
    # `pulumi up` checks this itself (infra/__main__.py) for the other platforms.
    from modelyard.pipelines.promotion.engine import check_current

    check_current(env)
    try:
        target = resolve(env.alias_of(model)).version
    except NoModelYet as exc:
        raise PipelineError(f"nothing to deploy to {environment}: {exc}") from None
    home = _folder(env, model)
    record = _record(home)
    running = record is not None and is_alive(int(record["pid"]))
    slot = "green" if record and record.get("slot") == "blue" else "blue"
    folder = home / slot
    options = serve_options(env, port=port, state=folder, poll_seconds=poll_seconds, model=model)
    old_version = None
    if running:
        assert record is not None
        old_folder = home / str(record["slot"])
        status = read_status(old_folder) or {}
        old_version = (status.get("stable") or {}).get("version")
        same = _same_settings(old_folder / "options.json", replace_state(options, old_folder))
        if status.get("ready") and old_version == target and same and not replace:
            return Deployment(environment, str(status["url"]), target, int(record["pid"]),
                              str(record["slot"]), False, f"already serving version {target}")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").unlink(missing_ok=True)
    (folder / "options.json").write_bytes(options_to_json(options))
    with (folder / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelyard.ml.serving", str(folder / "options.json")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://{options.host}:{options.port}"
    try:
        _wait_answering(folder, url, target, process, timeout)
    except PipelineError:
        _terminate(process.pid)
        raise
    if running and record is not None:
        _terminate(int(record["pid"]))
    (home / "deploy.json").write_bytes(
        orjson.dumps({"pid": process.pid, "slot": slot, "version": target, "url": url,
                      "time": time.time()})
    )  # fmt: skip
    replaced = f" (replacing the server of version {old_version})" if running else ""
    return Deployment(environment, url, target, process.pid, slot, True,
                      f"serving version {target}{replaced}")  # fmt: skip


def replace_state(options: ServeOptions, folder: Path) -> ServeOptions:
    return dataclasses.replace(options, state_dir=folder)


def _same_settings(path: Path, options: ServeOptions) -> bool:
    try:
        return bool(orjson.loads(path.read_bytes()) == orjson.loads(options_to_json(options)))
    except (FileNotFoundError, orjson.JSONDecodeError):
        return False


def _wait_answering(
    folder: Path, url: str, version: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Ready means: every worker loaded `version`, and one of them answered on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = folder / "server.log"
            raise PipelineError(
                f"the new server exited ({process.returncode}); log: {log}\n{_tail(log)}"
            )
        status = read_status(folder) or {}
        stable = status.get("stable") or {}
        if status.get("ready") and stable.get("version") == version:
            workers = set(status.get("workers") or [])
            for _ in range(20):  # SO_REUSEPORT spreads connections: look for one of ours
                info = _get_json(f"{url}/version")
                if info and info.get("worker_pid") in workers:
                    return
        time.sleep(0.2)
    raise PipelineError(f"the new server for {url} did not become ready in {timeout:.0f}s; log: "
                        f"{folder / 'server.log'}\n{_tail(folder / 'server.log')}")  # fmt: skip


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return orjson.loads(response.read())
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _terminate(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM: the supervisor drains its workers (in-flight requests finish) and exits."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
            if not is_alive(pid):
                return
        if waited == pid:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def stop(environment: str, model: str | None = None) -> bool:
    """Stop the environment's local server of `model` (default: training.model's); False when
    none was running."""
    home = serving_dir(environment, model)
    record = _record(home)
    (home / "deploy.json").unlink(missing_ok=True)
    if not record or not is_alive(int(record["pid"])):
        return False
    _terminate(int(record["pid"]))
    return True


def status(environment: str, model: str | None = None) -> dict[str, Any] | None:
    home = serving_dir(environment, model)
    record = _record(home)
    if not record or not is_alive(int(record["pid"])):
        return None
    return read_status(home / str(record["slot"]))
