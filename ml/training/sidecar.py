"""The training job's second process: it owns MLflow and matplotlib.

Importing those costs seconds of one core and every tracking call is a round trip to the server.
Done by the process that boosts, they would stand before and after the boosting; done here, they
overlap the data checks and the boosting, which leave a core free or nearly so. Calls run one at
a time, in the order they were sent, so a run exists before its metrics are logged.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar, cast

from modelyard.ml.errors import ModelyardMlError

T = TypeVar("T")


class SidecarFailed(ModelyardMlError):
    """A call in the sidecar raised; the message carries what it said."""


class Sidecar:
    """A spawned process (fork is unsafe once LightGBM's OpenMP threads exist).

    `send` queues a call and returns at once; its failure is raised by the next `send`, `call` or
    `wait`, or when the `with` block ends. `call` waits for a call's result; `wait`, for every
    call sent."""

    def __init__(self, setup: Callable[..., object], *args: Any) -> None:
        self._setup, self._args = setup, args
        self._sent: list[Future[Any]] = []

    def __enter__(self) -> Sidecar:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=context,
            initializer=_start,
            initargs=(os.getpid(), list(warnings.filters), self._setup, self._args),
        )
        self.send(int)  # the pool starts its process on the first call: start it now
        return self

    def send(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise_failures()  # a failure surfaces at the next checkpoint, not the end
        self._sent.append(self._pool.submit(_guarded, fn, *args))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._pool.submit(_guarded, fn, *args)
        try:
            result: T = future.result()
        finally:
            # Calls run in order: everything sent before has finished, and its failure, the
            # first cause, is raised rather than this call's.
            self._raise_failures()
        return result

    def wait(self) -> None:
        """Return once every call sent so far has run; raise the first that failed."""
        sent, self._sent = self._sent, []
        for future in sent:
            future.result()

    def _raise_failures(self) -> None:
        sent, self._sent = self._sent, [f for f in self._sent if not f.done()]
        for future in sent:
            if future.done():
                future.result()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                for future in self._sent:
                    future.result()
        finally:
            self._pool.shutdown(wait=kind is None, cancel_futures=True)


def _start(
    parent: int, warning_filters: list[Any], setup: Callable[..., object], args: tuple[Any, ...]
) -> None:
    # The training process's warning filters (a spawned process starts with Python's defaults):
    # what the command keeps off the terminal, its sidecar does too.
    cast(list[Any], warnings.filters)[:] = warning_filters

    # A training killed with SIGKILL can't shut the pool down: the sidecar leaves on its own,
    # quickly, so a resumed training never has two of them writing to the same runs.
    def leave_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=leave_when_orphaned, daemon=True).start()
    # Every call has returned by the time the sidecar exits and it holds nothing to flush:
    # skipping the interpreter's teardown of MLflow and friends saves the job a second.
    atexit.register(os._exit, 0)
    setup(*args)


def _guarded(fn: Callable[..., T], *args: Any) -> T:
    """Exceptions cross the process boundary as one picklable error with the original message
    (MLflow's own exceptions don't unpickle)."""
    try:
        return fn(*args)
    except ModelyardMlError as exc:
        raise SidecarFailed(str(exc)) from None
    except Exception as exc:
        raise SidecarFailed(f"{type(exc).__name__}: {exc}") from None
