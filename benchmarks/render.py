"""Render time per environment (issue 6; goal: under 5 s each on this machine).

Cold: a fresh `python -m infra.render ENV` process, as `infra diff` runs for the base revision
and CI runs per change (interpreter start and SDK imports included). Warm: the same render again
in one process, the program's own cost. CPU seconds of the cold process are printed too: on a
shared machine wall time also measures the neighbours (the load average is printed with it).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

from modelyard.contracts.environment import list_environments
from modelyard.infra.render import render

GOAL_SECONDS = 5.0
WARM_RUNS = 5


def main() -> None:
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = f"{'environment':<12} {'resources':>9} {'cold s':>8} {'cold cpu s':>10}"
    print(f"{header} {'warm s (median)':>16}  goal")
    worst = 0.0
    for env in list_environments():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "modelyard.infra.render", env], check=True, capture_output=True
        )
        cold = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        timings = []
        for _ in range(WARM_RUNS):
            start = time.perf_counter()
            state = render(env)
            timings.append(time.perf_counter() - start)
        warm = statistics.median(timings)
        worst = max(worst, cold)
        verdict = "ok" if cold < GOAL_SECONDS else "OVER"
        row = f"{env:<12} {len(state.resources):>9} {cold:>8.2f} {cpu:>10.2f}"
        print(f"{row} {warm:>16.3f}  {verdict}")
    print(
        f"slowest cold render {worst:.2f} s vs goal {GOAL_SECONDS:.0f} s: "
        f"{'met' if worst < GOAL_SECONDS else 'NOT met'}"
    )
