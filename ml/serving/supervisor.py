"""The server's main process: resolves the model, runs the workers, follows the alias, judges
candidates. It never answers HTTP itself; it writes routing.json and status.json for the
workers and for `modelyard deploy`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import orjson
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.tags import rollout_tag
from modelyard.ml.serving import metrics
from modelyard.ml.serving.rollout import Limits, prediction_shift, verdict, window
from modelyard.ml.serving.routing import Mode, Routing, VersionRef, write_routing
from modelyard.ml.serving.source import NoModelYet, materialise, resolve
from modelyard.ml.serving.worker import WorkerConfig
from modelyard.ml.serving.worker import command as worker_command

log = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class ServeOptions:
    model_uri: str
    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = Path(".modelyard/serving/adhoc")
    workers: int = 2
    poll_seconds: float = 10.0
    strategy: str = "blue-green"
    canary_steps: tuple[int, ...] = (10, 50, 100)
    ab_split: int = 50
    limits: Limits = field(default_factory=lambda: Limits(0.01, 100.0))
    canary_step_seconds: float = 60.0
    sample_rate: float = 0.1
    sample_max_rows: int = 50_000
    max_rows: int = 100_000
    max_body_bytes: int = 64 * 1024 * 1024
    image_digest: str = ""
    environment: str = ""
    auth_dir: str = ""  # bearer tokens (ml/serving/auth.py); "": scoring and /metrics are open
    compile_models: bool = True  # each version compiled in the background (ml/serving/compiled.py)
    # A candidate pinned beside model_uri (both fixed versions); `strategy` says how they split
    # and candidate_weight is the canary's share, set by whoever deploys (no stepping here).
    candidate_uri: str = ""
    candidate_weight: int = 0
    # A file holding the canary's weight (a mounted ConfigMap on Kubernetes): read every second,
    # so a step changes the share of the pods already running, with no restart.
    candidate_weight_file: str = ""
    # Run after rolling a candidate back (variables.ROLLBACK_COMMAND): the rollback made durable.
    rollback_command: tuple[str, ...] = ()

    @property
    def follows(self) -> bool:
        return (
            not self.candidate_uri
            and self.model_uri.startswith("models:/")
            and "@" in self.model_uri
        )


@dataclass
class RolloutState:
    step: int = 0
    step_started: float = 0.0
    baseline: dict[str, Any] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    events: list[dict[str, object]] = field(default_factory=list)


class Supervisor:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.multiproc_dir = self.state_dir / "metrics"
        self.routing = Routing()
        self.rollout = RolloutState()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self._last_poll = 0.0
        self._resolved_once = False
        self._target: str | None = None
        self._previous: VersionRef | None = None  # the stable version before the last swap
        self._weight_read = 0.0

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> None:
        # The alias is polled again in a few seconds: a registry that is down should not hold
        # the loop (canary judging, worker restarts) through MLflow's minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self._prepare()
        if not self.options.auth_dir:
            log.warning("scoring and /metrics are open to anyone who can reach the port "
                        "(no token folder: modelyard:serving.auth is not set)")  # fmt: skip
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self._publish(
            replace(self.routing, message="starting: resolving " + self.options.model_uri),
            resolving=True,
        )
        self.workers = [self._spawn() for _ in range(self.options.workers)]
        try:
            while not self.stopping:
                self._tick()
                time.sleep(0.2)
        finally:
            self._shutdown()

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.multiproc_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir / "acks", ignore_errors=True)
        self.multiproc_dir.mkdir(parents=True)
        config = WorkerConfig(
            host=self.options.host,
            port=self.options.port,
            state_dir=str(self.state_dir),
            max_rows=self.options.max_rows,
            max_body_bytes=self.options.max_body_bytes,
            sample_rate=self.options.sample_rate,
            sample_max_rows=self.options.sample_max_rows,
            image_digest=self.options.image_digest,
            auth_dir=self.options.auth_dir,
            compile_models=self.options.compile_models,
        )
        (self.state_dir / "worker.json").write_bytes(orjson.dumps(asdict(config)))

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir),
            "OMP_NUM_THREADS": "1",
        }
        return subprocess.Popen(worker_command(self.state_dir / "worker.json"), env=env)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        deadline = time.monotonic() + 15
        for worker in self.workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self._write_status(stopped=True)

    # -- the loop -----------------------------------------------------------------------------
    def _tick(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                # A crashed worker is replaced; its metrics stay counted (multiprocess mode).
                log.warning(
                    "worker %d exited with %s: starting another", worker.pid, worker.returncode
                )
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(worker.pid, str(self.multiproc_dir))
                (self.state_dir / "acks" / str(worker.pid)).unlink(missing_ok=True)
                self.workers[i] = self._spawn()
        now = time.monotonic()
        due = now - self._last_poll >= self.options.poll_seconds
        if due and (self.options.follows or not self._resolved_once):
            self._last_poll = now
            self._pin() if self.options.candidate_uri else self._follow()
        if self.options.candidate_weight_file and now - self._weight_read >= 1.0:
            self._weight_read = now
            self._follow_weight()
        if self._load_failed():
            self._keep_previous()
        elif self.routing.candidate is not None and not self._judged_by_deploy():
            self._judge()
        self._write_status()

    def _follow(self) -> None:
        try:
            ref = resolve(self.options.model_uri)
        except NoModelYet as exc:
            if self.routing.stable is None:
                self._publish(replace(self.routing, message=f"not ready: {exc}"))
            return
        except Exception as exc:  # registry down: keep serving what is loaded, say why
            log.warning("cannot resolve %s: %s", self.options.model_uri, exc)
            if self.routing.stable is None:
                self._publish(replace(self.routing, message=f"not ready: {exc}"))
            return
        key = ref.version or ref.uri
        if key == self._target:
            return
        try:
            ref = materialise(ref, self.state_dir.parent / "models")
        except Exception as exc:
            log.warning("cannot download %s: %s", ref.uri, exc)
            if self.routing.stable is None:
                self._publish(replace(self.routing, message=f"not ready: {exc}"))
            return
        self._resolved_once = True
        self._target = key
        self._apply(ref)

    def _pin(self) -> None:
        """Serve the stable and the candidate the deployment names, split as it says."""
        models = self.state_dir.parent / "models"
        try:
            stable = materialise(resolve(self.options.model_uri), models)
            candidate = materialise(resolve(self.options.candidate_uri), models)
        except Exception as exc:  # registry down or a version missing: not ready, say why
            log.warning("cannot load the pinned versions: %s", exc)
            self._publish(replace(self.routing, message=f"not ready: {exc}"))
            return
        self._resolved_once = True
        strategy = self.options.strategy
        mode = cast(Mode, strategy if strategy in ("ab", "shadow") else "canary")
        canary = self._file_weight() if self.options.candidate_weight_file else None
        weight = {
            "canary": self.options.candidate_weight if canary is None else canary,
            "ab": self.options.ab_split,
        }.get(mode, 0)
        self.rollout.baseline = metrics.read_version_stats(str(self.multiproc_dir))
        self._publish(
            Routing(
                stable=stable,
                candidate=candidate,
                mode=mode,
                weight=weight,
                message=f"{mode}: version {candidate.version} at {weight}% beside "
                f"{stable.version} (weight set by the deployment)",
            )
        )
        self._event(mode, candidate.version, f"weight {weight}%")

    def _file_weight(self) -> int | None:
        """The weight in candidate_weight_file; None (and a warning) when it says no percentage."""
        path = Path(self.options.candidate_weight_file)
        try:
            weight = int(path.read_text().strip())
        except (OSError, ValueError) as exc:
            log.warning("cannot read the canary weight from %s: %s", path, exc)
            return None
        if not 0 <= weight <= 100:
            log.warning("the canary weight in %s is %d, not a percentage: ignored", path, weight)
            return None
        return weight

    def _follow_weight(self) -> None:
        """A pinned canary whose weight file changed: the new share, for the same two versions."""
        routing = self.routing
        if routing.candidate is None or routing.mode != "canary":
            return
        weight = self._file_weight()
        if weight is None or weight == routing.weight:
            return
        self._publish(replace(
            routing, weight=weight,
            message=f"canary: version {routing.candidate.version} at {weight}% beside "
            f"{routing.stable.version if routing.stable else '?'} (weight set by the deployment)",
        ))  # fmt: skip
        self._event("canary", routing.candidate.version, f"weight {weight}%")

    def _apply(self, ref: VersionRef) -> None:
        """The alias (or URI) now points at `ref`: roll it out the environment's way."""
        current, candidate = self.routing.stable, self.routing.candidate
        if current is None:
            self._publish(Routing(stable=ref, message=f"serving {ref.name} version {ref.version}"))
            self._event("serve", ref.version)
            return
        if ref.version == current.version:
            if candidate is not None:  # the alias went back: drop the candidate
                self._event(
                    "abandon", candidate.version, "the alias moved back to the stable version"
                )
                self._publish(
                    Routing(stable=current, message=f"serving {ref.name} version {ref.version}")
                )
            return
        if ref.version in self.rollout.rejected:
            return
        strategy = self.options.strategy
        if strategy in ("recreate", "rolling", "blue-green"):
            self._previous = current
            self._publish(Routing(stable=ref, message=f"serving {ref.name} version {ref.version}"))
            self._event("swap", ref.version, f"from version {current.version}")
            return
        weight = {"canary": self.options.canary_steps[0], "ab": self.options.ab_split}.get(
            strategy, 0
        )
        self.rollout.step = 0
        self.rollout.step_started = time.monotonic()
        self.rollout.baseline = metrics.read_version_stats(str(self.multiproc_dir))
        self._publish(
            Routing(
                stable=current,
                candidate=ref,
                mode=cast(Mode, strategy),
                weight=weight,
                message=f"{strategy}: version {ref.version} beside {current.version}",
            )
        )
        self._event(strategy, ref.version, f"weight {weight}%")

    def _judge(self) -> None:
        routing = self.routing
        candidate, stable = routing.candidate, routing.stable
        assert candidate is not None and stable is not None
        stats = metrics.read_version_stats(str(self.multiproc_dir))
        base = self.rollout.baseline
        cand = window(stats.get(candidate.version, {}), base.get(candidate.version))
        reason = verdict(cand, self.options.limits)
        if reason is not None:
            self.rollout.rejected.add(candidate.version)
            self._event("rollback", candidate.version, reason)
            self._publish(
                Routing(
                    stable=stable,
                    message=(
                        f"serving {stable.name} version {stable.version}; "
                        f"candidate {candidate.version} "
                        f"rolled back: {reason}"
                    ),
                )
            )
            self._tag(candidate, f"rolled back: {reason}")
            self._make_durable(candidate, stable, reason)
            return
        if routing.mode != "canary":
            return  # only a canary steps (a pinned one never gets here: _judged_by_deploy)
        elapsed = time.monotonic() - self.rollout.step_started
        if (
            elapsed < self.options.canary_step_seconds
            or cand.requests < self.options.limits.min_requests
        ):
            return
        steps = self.options.canary_steps
        self.rollout.step += 1
        self.rollout.step_started = time.monotonic()
        self.rollout.baseline = stats
        if self.rollout.step >= len(steps) or steps[self.rollout.step] >= 100:
            self._event("promote", candidate.version, "canary passed every step")
            self._publish(
                Routing(
                    stable=candidate,
                    message=f"serving {candidate.name} version {candidate.version} (canary passed)",
                )
            )
            return
        weight = steps[self.rollout.step]
        self._event("canary", candidate.version, f"weight {weight}%")
        self._publish(
            replace(
                routing,
                weight=weight,
                message=f"canary: version {candidate.version} at {weight}% beside {stable.version}",
            )
        )

    # -- outputs ------------------------------------------------------------------------------
    def _publish(self, routing: Routing, resolving: bool = False) -> None:
        self.routing = replace(routing, generation=self.routing.generation + 1, resolving=resolving)
        write_routing(self.state_dir / "routing.json", self.routing)
        log.info("routing generation %d: %s", self.routing.generation, self.routing.message)

    def _event(self, kind: str, version: str, detail: str = "") -> None:
        self.rollout.events.append(
            {"time": time.time(), "event": kind, "version": version, "detail": detail}
        )
        log.info("%s version %s %s", kind, version, detail)

    def _tag(self, ref: VersionRef, text: str) -> None:
        """Leave the rollback on the model version in the registry, for the audit trail."""
        if not ref.uri.startswith("models:/") or not self.options.environment:
            return
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient().set_model_version_tag(
                ref.name, ref.version, rollout_tag(self.options.environment), text
            )
        except Exception as exc:
            log.warning("cannot tag %s version %s: %s", ref.name, ref.version, exc)

    def _judged_by_deploy(self) -> bool:
        """A canary the deployment pinned is stepped and rolled back by the deploy, which reads
        every pod's /metrics. A pod dropping the candidate on its own would disagree with the
        other pods, the Deployment and the environment's file, and leave the deploy waiting for
        a weight the pod no longer serves."""
        return bool(self.options.candidate_uri) and self.routing.mode == "canary"

    def _load_failed(self) -> bool:
        """Did a worker report that it cannot load the versions of the current routing?"""
        for worker in self.workers:
            try:
                ack = orjson.loads((self.state_dir / "acks" / str(worker.pid)).read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            if ack["generation"] == self.routing.generation and not ack["ok"]:
                return True
        return False

    def _keep_previous(self) -> None:
        """A version the workers cannot load is rolled back: they kept answering with the old
        one, and the routing says so again."""
        routing = self.routing
        broken, keep = routing.candidate, routing.stable
        if broken is None:
            broken, keep = routing.stable, self._previous
        if broken is None or keep is None:
            return  # nothing loaded before either: stay not ready, the log says why
        reason = f"version {broken.version} could not be loaded (see the server log)"
        self.rollout.rejected.add(broken.version)
        self._event("rollback", broken.version, reason)
        self._previous = None
        self._publish(Routing(stable=keep, message=f"serving {keep.name} version {keep.version}; "
                              f"{reason}"))  # fmt: skip
        self._tag(broken, f"rolled back: {reason}")
        self._make_durable(broken, keep, reason)

    def _make_durable(self, bad: VersionRef, keep: VersionRef, reason: str) -> None:
        """Hand the rollback to the environment's own (alias, file, history), so a restart of
        this server or the runner serves `keep` too; the server itself already does."""
        if not self.options.rollback_command:
            return
        command = [*self.options.rollback_command, "--to-version", keep.version, "--reason",
                   f"automatic: the server rolled version {bad.version} back: {reason}"]  # fmt: skip
        with (self.state_dir / "rollback.log").open("ab") as log:
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._event("durable", bad.version, f"`{' '.join(command[:5])}` started")

    def _acked(self) -> bool:
        acks = self.state_dir / "acks"
        for worker in self.workers:
            try:
                ack = orjson.loads((acks / str(worker.pid)).read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                return False
            if ack["generation"] != self.routing.generation or not ack["ok"]:
                return False
        return True

    def _write_status(self, stopped: bool = False) -> None:
        routing = self.routing
        applied = self._acked()
        stats = None
        if routing.candidate is not None and routing.stable is not None:
            all_stats = metrics.read_version_stats(str(self.multiproc_dir))
            stats = prediction_shift(
                window(all_stats.get(routing.candidate.version, {}), None),
                window(all_stats.get(routing.stable.version, {}), None),
            )
        status = {
            "pid": os.getpid(),
            "url": f"http://{self.options.host}:{self.options.port}",
            "model_uri": self.options.model_uri,
            "generation": routing.generation,
            "applied": applied,
            "ready": routing.stable is not None and applied and not stopped,
            "stopped": stopped,
            "stable": asdict(routing.stable) if routing.stable else None,
            "candidate": asdict(routing.candidate) if routing.candidate else None,
            "mode": routing.mode,
            "weight": routing.weight,
            "prediction_psi_candidate_vs_stable": stats,
            "message": routing.message,
            "workers": [w.pid for w in self.workers],
            "events": self.rollout.events[-50:],
        }
        write_atomic(
            self.state_dir / "status.json",
            orjson.dumps(status, option=orjson.OPT_INDENT_2),
            durable=False,
        )


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads((state_dir / "status.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
