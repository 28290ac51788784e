"""Whether a process the kit started still runs: the monitor restarts what is not."""

from __future__ import annotations

import os
import subprocess
import time

from modelyard.pipelines.processes import is_alive


def test_a_running_process_is_alive_and_a_killed_unreaped_one_is_not() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert is_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and is_alive(child.pid):
            time.sleep(0.05)
        # Not waited for yet: the process table still holds it as a zombie.
        assert os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
        assert not is_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not is_alive(child.pid)
