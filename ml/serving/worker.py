"""One server worker process: follows routing.json, loads the versions it names, answers HTTP.

Started by the supervisor (`python -m modelyard.ml.serving.worker CONFIG.json`) with
PROMETHEUS_MULTIPROC_DIR set, so all workers' metrics add up on /metrics.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import orjson
from modelyard.contracts.atomic_file import write_atomic
from modelyard.ml.monitoring.sampling import FLUSH_SECONDS, SampleWriter
from modelyard.ml.serving.app import ScoringApp, Snapshot
from modelyard.ml.serving.auth import Guard
from modelyard.ml.serving.http_server import HttpServer
from modelyard.ml.serving.model import LoadedModel, ModelLoadError, load_model
from modelyard.ml.serving.routing import VersionRef, read_routing

log = logging.getLogger("modelyard.serving")

# LightGBM imports these when installed; a worker never uses them and they cost seconds of
# start-up on a busy machine, so worker processes start with them marked absent.
UNUSED_IN_WORKER = ("sklearn", "pandas", "pyarrow", "dask", "datatable")


def command(config_path: Path) -> list[str]:
    """The command line of one worker process."""
    code = (
        "import sys\n"
        f"for name in {UNUSED_IN_WORKER!r}: sys.modules.setdefault(name, None)\n"
        "from modelyard.ml.serving.worker import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, str(config_path)]


@dataclass(frozen=True)
class WorkerConfig:
    host: str
    port: int
    state_dir: str
    max_rows: int = 100_000
    max_body_bytes: int = 64 * 1024 * 1024
    sample_rate: float = 0.1
    sample_max_rows: int = 50_000
    image_digest: str = ""
    auth_dir: str = ""  # the bearer tokens' folder (ml/serving/auth.py); "": open
    compile_models: bool = True  # ml/serving/compiled.py

    @property
    def routing_path(self) -> Path:
        return Path(self.state_dir) / "routing.json"

    @property
    def compiled_dir(self) -> Path:
        return Path(self.state_dir) / "compiled"

    @property
    def acks_dir(self) -> Path:
        return Path(self.state_dir) / "acks"


class RoutingFollower:
    """Polls routing.json; loads new versions beside the old ones, then swaps in one assignment."""

    def __init__(self, app: ScoringApp, config: WorkerConfig) -> None:
        self.app = app
        self.config = config
        self.loaded: dict[tuple[str, str], LoadedModel] = {}
        self._seen: tuple[int, int] | None = None
        self.compiles: dict[str, subprocess.Popen[bytes]] = {}  # by model digest
        self.not_compiled: set[str] = set()  # digests that stay on LightGBM (said once, in the log)
        # Set once the first routing is applied, or refused: the worker then has a model, or an
        # answer saying why not. Until then it does not listen (see serve).
        self.settled = threading.Event()
        # Acks wait for the listening socket: the supervisor calls a server ready once every
        # worker has acked, and a client told "ready" must not be refused a connection.
        self.listening = threading.Event()
        self._ack_due: tuple[int, bool] | None = None
        self._ack_lock = threading.Lock()  # two threads may write it: the last due one lands last
        self.load_error = ""  # the last version that could not be loaded, and why

    def poll(self) -> None:
        path = self.config.routing_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        if (stat.st_mtime_ns, stat.st_size) == self._seen:
            return
        self._seen = (stat.st_mtime_ns, stat.st_size)
        routing = read_routing(path)
        if routing.generation == self.app.snapshot.routing.generation and self.app.snapshot.stable:
            return
        stable = self._load(routing.stable)
        candidate = self._load(routing.candidate)
        if (routing.stable is not None and stable is None) or (
            routing.candidate is not None and candidate is None
        ):
            # Keep answering with what we have; the supervisor rolls the broken version back.
            if self.app.snapshot.stable is None:  # nothing to answer with: say why
                message = f"not ready: {self.load_error}"
                self.app.snapshot = Snapshot(replace(routing, message=message), None, None)
            self._ack(routing.generation, ok=False)
            self.settled.set()
            return
        self.app.snapshot = Snapshot(routing, stable, candidate)
        keep = {(m.path.as_posix(), m.version) for m in (stable, candidate) if m is not None}
        self.loaded = {k: v for k, v in self.loaded.items() if k in keep}
        gc.collect()
        gc.freeze()  # the loaded models are long-lived: keep them out of every later collection
        self._ack(routing.generation, ok=True)
        if not routing.resolving:
            self.settled.set()
        log.info(
            "serving generation %d: stable %s, candidate %s",
            routing.generation,
            stable and stable.version,
            candidate and candidate.version,
        )

    def _load(self, ref: VersionRef | None) -> LoadedModel | None:
        if ref is None:
            return None
        key = (Path(ref.path).as_posix(), ref.version)
        if key not in self.loaded:
            try:
                self.loaded[key] = load_model(Path(ref.path), ref.name, ref.version, ref.run_id)
            except ModelLoadError as exc:
                self.load_error = f"cannot load {ref.name} version {ref.version}: {exc}"
                log.error("%s", self.load_error)
                return None
        return self.loaded[key]

    def compile_loaded(self) -> None:
        """Start each loaded version's background compile; swap the result in when it is there
        (ml/serving/compiled). Every worker of a server looks for the same files."""
        if not self.config.compile_models:
            return
        from modelyard.ml.serving.compiled import (
            SWAPPED_IN,
            CompiledPredictor,
            cache_key,
            start_compile,
        )

        folder = self.config.compiled_dir
        for model in list(self.loaded.values()):
            if model.predictor.kind == "compiled" or model.digest in self.not_compiled:
                continue
            key = cache_key(model.digest)
            built, refused = folder / f"{key}.o", folder / f"{key}.refused"
            running = self.compiles.get(model.digest)
            why = ""
            if built.exists():
                try:
                    model.predictor = CompiledPredictor(built, model.data_file)
                    log.info("%s version %s: %s", model.name, model.version, SWAPPED_IN)
                    continue
                except Exception as exc:  # an unreadable result: LightGBM goes on scoring
                    why = f"cannot load {built}: {exc}"
            elif refused.exists():
                why = refused.read_text(errors="replace").splitlines()[0]
            elif running is None:
                self.compiles[model.digest] = start_compile(model.data_file, model.digest, folder)
            elif running.poll() is not None and running.returncode not in (0, 1):
                why = f"the compile ended with {running.returncode} (see {folder / key}.log)"
            if why:
                self.not_compiled.add(model.digest)
                log.warning("%s version %s stays on LightGBM's predictor: %s", model.name,
                            model.version, why)  # fmt: skip

    def _ack(self, generation: int, ok: bool) -> None:
        self._ack_due = (generation, ok)
        if self.listening.is_set():
            self._write_ack()

    def now_listening(self) -> None:
        """Called once the socket listens: the ack held back until then is written."""
        self.listening.set()
        self._write_ack()

    def _write_ack(self) -> None:
        with self._ack_lock:
            due = self._ack_due
            if due is None:
                return
            self.config.acks_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(
                self.config.acks_dir / str(os.getpid()),
                orjson.dumps({"generation": due[0], "ok": due[1]}),
                durable=False,
            )

    def run_forever(self, stop: threading.Event, orphaned: Callable[[], None]) -> None:
        supervisor = os.getppid()
        ticks = 0
        while not stop.is_set():
            ticks += 1
            if ticks % 5 == 0:  # every second: a rotated token takes effect without a restart
                self.app.guard.refresh()
                try:
                    self.compile_loaded()
                except Exception:  # compiling is an optimisation: never the follower's end
                    log.exception("cannot compile the loaded models")
            if os.getppid() != supervisor:
                # The supervisor was killed: a worker left behind would keep answering on the
                # shared port with a routing nobody updates, beside its replacement's workers.
                log.error("supervisor %d is gone: draining and exiting", supervisor)
                orphaned()
                return
            try:
                self.poll()
            except Exception:  # a half-written or broken routing file must not kill the follower
                log.exception("cannot apply routing.json")
            stop.wait(0.2)


async def serve(config: WorkerConfig) -> None:
    samples = None
    if config.sample_rate > 0:
        samples = SampleWriter(
            Path(config.state_dir) / "samples", config.sample_rate, config.sample_max_rows
        )
    app = ScoringApp(
        os.environ["PROMETHEUS_MULTIPROC_DIR"],
        samples,
        config.max_rows,
        config.image_digest,
        Guard(config.auth_dir),
    )
    follower = RoutingFollower(app, config)
    server = HttpServer(app.handle, config.max_body_bytes)
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    orphaned = partial(loop.call_soon_threadsafe, finished.set)
    threading.Thread(target=follower.run_forever, args=(stop, orphaned), daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finished.set)
    # Listen only once the first routing is applied: the port is shared (SO_REUSEPORT), so a
    # worker still loading would take its share of new connections and answer them 503 while
    # its siblings, or the server it replaces, are serving. A worker that cannot load listens
    # anyway and says why ("not ready: ...").
    while not follower.settled.is_set() and not finished.is_set():
        await asyncio.sleep(0.05)
    if finished.is_set():
        stop.set()
        return
    await server.start(config.host, config.port)
    follower.now_listening()

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                app.flush()
            except Exception:  # a failed flush loses a second of summaries, not the flusher
                log.exception("cannot flush metrics and samples")

    flusher = asyncio.create_task(flush_periodically())
    await finished.wait()
    await server.drain()
    flusher.cancel()
    stop.set()
    app.flush()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    config = WorkerConfig(**orjson.loads(Path(argv[0]).read_bytes()))
    # Fewer, later collections: the request path allocates little that survives.
    gc.set_threshold(50_000, 50, 100)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
