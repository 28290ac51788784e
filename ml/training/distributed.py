"""Several workers train one LightGBM model over LightGBM's own data-parallel network.

A training Job of N pods (training.kubernetes.workers) runs the train stage in each. Rank 0, the
leader, runs the stage as one worker would: the gate loop, tracking, evaluation, registration.
Every fit of the loop is made by all N together (`tree_learner: data`): each worker boosts on its
share of the training rows (every N-th row of the split, so a rerun shares the same way), every
worker scores the whole validation set each round, so early stopping stops all of them at the same
round, and the model that comes out is one ordinary LightGBM model, the same on every worker.

The others, followers, join the fits the leader posts. They meet in a folder on the Job's volume:
- a follower checks in (`worker-RANK.json`: the ADDRESS:PORT it listens on and a fresh nonce) and
  keeps the file's time fresh while it lives;
- before each fit the leader waits for a live check-in from every rank and posts the fit
  (`fit.json`): its parameters, the leader's checkpoint folder, the machines list, the nonces;
- a follower runs a posted fit only if it carries its own nonce: a fit posted for a worker that has
  since been replaced is never joined by its replacement;
- when the leader is done it posts `done`, and the followers leave.
A worker that loses the network mid-fit (another was killed) fails: Kubernetes replaces its pod,
the leader resumes from its last checkpoint and the followers from nothing (they keep none). A
worker whose peer froze or went without closing its sockets cleanly would wait for ever; the
StallWatch ends it instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.contracts import training_job, variables
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.state import training_dir
from modelyard.ml.errors import ModelyardMlError

HEARTBEAT_SECONDS = 1.0
STALE_SECONDS = 5.0  # a check-in not touched for this long is a worker that has gone
JOIN_SECONDS = 900.0  # how long the leader waits for every worker (pods start, read the data)
POLL_SECONDS = 0.5
# LightGBM's own wait for its peers to connect, in minutes: every one has checked in by then.
CONNECT_MINUTES = 5
# LightGBM keeps a fit's listening socket until the process ends: each fit a process joins listens
# on the next port up from the one it started with (the Job's NetworkPolicy opens them all). A
# follower says in its check-in which port its next fit listens on.
PORTS_PER_PROCESS = training_job.NETWORK_PORTS
_FIT, _DONE = "fit.json", "done.json"
# How a worker that stalled ends: not USER_ERROR_EXIT (which fails the Job at once), so the Job
# replaces its pod as a lost one and the fit resumes from its checkpoint. EX_TEMPFAIL.
STALLED_EXIT = 75


class NetworkProblem(ModelyardMlError):
    """The workers did not meet: which ones are missing, and since when."""


@dataclass(frozen=True)
class PostedFit:
    """One fit as the leader posted it: what every worker passes to LightGBM."""

    serial: str  # the leader's nonce and the fit's number: one fit, whoever reads it
    params: dict[str, Any]
    checkpoint_dir: Path
    machines: tuple[str, ...]  # ADDRESS:PORT of each rank, in rank order


@dataclass
class Network:
    rank: int
    size: int
    listen: str  # ADDRESS:PORT this worker checks in with; its fits listen from PORT up
    folder: Path  # on the volume every worker mounts; one per Job (never met by another's)
    nonce: str = ""
    _fits: int = 0  # joined (or posted) by this process: the next one listens this far up
    _started: float = 0.0

    def __post_init__(self) -> None:
        self.nonce = uuid.uuid4().hex
        self._started = time.time()

    @classmethod
    def from_environment(cls, state_root: Path) -> Network | None:
        """The network of this Job's pod (variables.TRAINING_*); None for a single worker."""
        size = int(os.environ.get(variables.TRAINING_WORKERS, "1"))
        if size <= 1:
            return None
        job = os.environ.get(variables.TRAINING_JOB)
        listen = os.environ.get(variables.TRAINING_LISTEN)
        rank = int(os.environ.get(variables.TRAINING_RANK, "-1"))
        if not job or not listen or not 0 <= rank < size:
            raise NetworkProblem(
                f"{variables.TRAINING_WORKERS}={size} needs {variables.TRAINING_JOB}, "
                f"{variables.TRAINING_LISTEN} and {variables.TRAINING_RANK} (0 to {size - 1}): "
                "the training Job sets them on every pod"
            )
        return cls(rank, size, listen, training_dir(state_root) / "network" / job)

    @property
    def leads(self) -> bool:
        return self.rank == 0

    def shard(self, rows: Any) -> Any:
        """This worker's share of the training rows: every size-th, from its rank."""
        return rows[self.rank :: self.size]

    def lightgbm_params(self, fit: PostedFit) -> dict[str, Any]:
        return {
            "tree_learner": "data",
            "num_machines": self.size,
            "machines": ",".join(fit.machines),
            "local_listen_port": int(fit.machines[self.rank].rsplit(":", 1)[1]),
            "pre_partition": True,  # each worker was given its rows: LightGBM must not re-split
            "time_out": CONNECT_MINUTES,
        }

    # The leader's side.

    def post(self, params: dict[str, Any], checkpoint_dir: Path) -> PostedFit:
        """Wait until every worker is alive, then post the next fit for them to join."""
        workers = self._live_workers()
        fit = PostedFit(f"{self.nonce}-{self._fits}", params, checkpoint_dir,
                        tuple(w["listen"] for w in workers))  # fmt: skip
        self._fits += 1
        document = {"serial": fit.serial, "params": params, "checkpoint_dir": str(checkpoint_dir),
                    "machines": list(fit.machines), "nonces": [w["nonce"] for w in workers]}  # fmt: skip
        write_atomic(self.folder / _FIT, json.dumps(document))
        return fit

    def finish(self) -> None:
        """The leader is done: the followers leave."""
        write_atomic(self.folder / _DONE, json.dumps({"leader": self.nonce}))

    def _live_workers(self) -> list[dict[str, str]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        while True:
            workers: list[dict[str, str]] = [self._check_in_document()]
            missing = []
            for rank in range(1, self.size):
                found = self._check_in_of(rank)
                if found is None:
                    missing.append(str(rank))
                else:
                    workers.append(found)
            if not missing:
                return workers
            if time.monotonic() - started > JOIN_SECONDS:
                raise NetworkProblem(
                    f"worker(s) {', '.join(missing)} of {self.size} did not check in within "
                    f"{JOIN_SECONDS:.0f}s ({self.folder}): their pods are not running or cannot "
                    "read the data; `kubectl describe` the Job's pods"
                )
            time.sleep(POLL_SECONDS)

    def _check_in_of(self, rank: int) -> dict[str, str] | None:
        path = self.folder / f"worker-{rank}.json"
        try:
            touched = path.stat().st_mtime
            # A live worker touches its file every second: one not touched since this process
            # began is a worker of the attempt before, whose pod has gone with it.
            if touched < self._started or time.time() - touched > STALE_SECONDS:
                return None
            found: dict[str, str] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return found

    def _check_in_document(self) -> dict[str, str]:
        if self._fits == PORTS_PER_PROCESS:
            raise NetworkProblem(f"{self._fits} fits in one process: every port is used")
        address, port = self.listen.rsplit(":", 1)
        return {"listen": f"{address}:{int(port) + self._fits}", "nonce": self.nonce}

    # A follower's side.

    def check_in(self) -> None:
        """Say this worker is here, and keep saying it (a thread) while the process lives."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"worker-{self.rank}.json"
        write_atomic(path, json.dumps(self._check_in_document()))

        def beat() -> None:
            while True:
                time.sleep(HEARTBEAT_SECONDS)
                try:
                    os.utime(path)
                except FileNotFoundError:
                    return

        threading.Thread(target=beat, name="check-in", daemon=True).start()

    def fits(self, say: Callable[[str], None]) -> Any:
        """Each fit posted for this worker, in turn, until the leader is done."""
        joined = ""
        while not (self.folder / _DONE).is_file():
            try:
                posted = json.loads((self.folder / _FIT).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                posted = None
            if posted and posted["serial"] != joined and posted["nonces"][self.rank] == self.nonce:
                joined = posted["serial"]
                say(f"worker {self.rank} of {self.size}: joining fit {joined}")
                # The port of the fit after this one, said before this one lets the leader go on.
                self._fits += 1
                write_atomic(self.folder / f"worker-{self.rank}.json",
                             json.dumps(self._check_in_document()))  # fmt: skip
                yield PostedFit(joined, posted["params"], Path(posted["checkpoint_dir"]),
                                tuple(posted["machines"]))  # fmt: skip
                continue
            time.sleep(POLL_SECONDS)
        say(f"worker {self.rank} of {self.size}: the leader is done")


class StallWatch:
    """Ends this worker's process when a fit over the network finishes no boosting round for
    `seconds` (training.kubernetes.stallTimeoutSeconds).

    LightGBM's network cannot notice a peer that stalled or went: it sets its receive timeout
    with an int, which Linux refuses (SO_RCVTIMEO wants a timeval), so a worker whose peer froze
    waits in recv for ever, and one whose peer closed spins, since its receive loop reads the 0
    that recv returns at the end of the stream as no data yet. Either way the pod stays Running
    and nothing trains.
    """

    def __init__(self, rank: int, seconds: float) -> None:
        self.rank = rank
        self.seconds = seconds
        self._last = time.monotonic()
        self._ended = threading.Event()

    @classmethod
    @contextlib.contextmanager
    def over(cls, network: Network | None, seconds: float) -> Iterator[StallWatch | None]:
        """A watch for the span of one fit over `network`; None for a fit of one worker."""
        if network is None:
            yield None
            return
        watch = cls(network.rank, seconds)
        threading.Thread(target=watch._watch, name="stall-watch", daemon=True).start()
        try:
            yield watch
        finally:
            watch._ended.set()

    def round(self) -> None:
        """A boosting round finished: the fit is moving."""
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._ended.wait(min(5.0, self.seconds / 4)):
            idle = time.monotonic() - self._last
            if idle >= self.seconds:
                print(
                    f"worker {self.rank}: no boosting round for {idle:.0f} s "
                    f"(training.kubernetes.stallTimeoutSeconds is {self.seconds:g}): another "
                    "worker has stalled or gone; ending this pod so the Job replaces it and the "
                    "fit resumes from its checkpoint",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(STALLED_EXIT)  # the main thread is inside LightGBM: nothing else ends it
