"""The training job's sidecar process: calls in order, failures surfaced, no orphan left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from modelyard.ml.training.sidecar import Sidecar, SidecarFailed
from modelyard.pipelines.processes import is_alive

from tests.helpers import REPO


def append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def refuse(reason: str) -> None:
    raise ValueError(reason)


def test_calls_run_in_the_order_sent_in_another_process(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with Sidecar(append, log, "setup;") as sidecar:
        for n in range(5):
            sidecar.send(append, log, f"{n};")
        assert sidecar.call(read, log) == "setup;0;1;2;3;4;"
        assert sidecar.call(os.getpid) != os.getpid()


def slowly_append(path: str, text: str) -> None:
    time.sleep(0.5)
    append(path, text)


def test_wait_returns_once_every_call_sent_has_run(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with Sidecar(int) as sidecar:
        sidecar.send(slowly_append, str(log), "stored;")
        sidecar.wait()
        assert log.read_text(encoding="utf-8") == "stored;"
        sidecar.send(refuse, "the server went away")
        sidecar.send(refuse, "a knock-on failure")
        with pytest.raises(SidecarFailed, match="the server went away"):
            sidecar.wait()


def test_the_first_failure_is_raised_by_the_next_call_with_its_own_message() -> None:
    first = "ValueError: the server went away"
    with pytest.raises(SidecarFailed, match=first), Sidecar(int) as sidecar:
        sidecar.send(refuse, "the server went away")
        sidecar.call(refuse, "a later, consequential failure")


def test_a_failed_send_is_raised_when_the_block_ends() -> None:
    with pytest.raises(SidecarFailed, match="nobody waited for me"), Sidecar(int) as sidecar:
        sidecar.send(refuse, "nobody waited for me")


def test_the_sidecar_leaves_when_its_training_process_is_killed() -> None:
    script = (
        "import os, time\n"
        "from modelyard.ml.training.sidecar import Sidecar\n"
        "with Sidecar(int) as sidecar:\n"
        "    print(sidecar.call(os.getpid), flush=True)\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert is_alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while is_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(child), "the sidecar outlived its training process"
