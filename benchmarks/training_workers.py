"""One training worker against two on the local cluster (#27): the train stage with
pipeline.trainIn `kubernetes`, the same churn data, the same settings, training.kubernetes.workers
1 then 2, at two data sizes, on data pushed to staging's MLflow (`modelyard data push`, timed) that
the pods fetch, as a team whose data is not on the agent trains. For each: the stage's time (image
push, the Job), the Job's own time (the fetch onto the volume included) (from its start to its completion), each worker's peak memory (its pod's
memory cgroup, polled while it runs; page cache included) and the holdout AUC. From the two sizes,
the memory a row costs each worker, and the largest data each configuration would train within
this machine's memory (all workers here) and within one such machine per worker.

What 2 cores cannot show: two workers on one 2-core node share the same two cores (a CPU limit of
one core each, so one LightGBM thread each, against two threads for one worker), so they cannot be
faster than one; their figures here are the cost of the network and of each worker's own reads.
What they do show: each worker holds its share of the rows, so the memory a row costs a worker
falls with the workers, and a cluster of N such machines trains about N times the data.

Sets staging up as `make demo-cluster` does, in a state folder of its own. Needs Docker,
`make tools` and `make cluster-tools`; about 15 minutes."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._cluster_project import demo_production, edit, run_in_own_state

SIZES = (250_000, 1_000_000)
WORKERS = (1, 2)
ENV = "staging"
CORES = 2  # this machine's
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def main() -> None:
    run_in_own_state("benchmarks.training_workers", "training-workers")


def _measure() -> None:
    from modelyard.contracts.environment import load_environment
    from modelyard.infra.local_cluster.settings import LOCAL_STORAGE_CLASS
    from modelyard.ml.data.sample import generate_churn

    with demo_production() as environments:
        _push_with_the_platform_s_user(environments)
        edit(environments, ENV, {
            "pipeline.trainIn": "kubernetes",
            "training.kubernetes.storageClass": LOCAL_STORAGE_CLASS,
            "training.numBoostRound": 100, "training.earlyStoppingRounds": None,
            "training.checkpointEvery": 50, "training.budget": {"trials": 1, "minutes": 30},
            "training.gate": "roc_auc >= 0.5",
        })  # fmt: skip
        namespace = load_environment(ENV).serving.namespace
        results, pushes = [], []
        for rows in SIZES:
            data = Path.cwd() / f"churn-{rows}.parquet"
            generate_churn(rows, seed=5).to_parquet(data, index=False)
            started = time.perf_counter()
            uri = _cli("data", "push", ENV, "--data", str(data)).strip()
            pushes.append((rows, data.stat().st_size, time.perf_counter() - started))
            for workers in WORKERS:
                # The machine's two cores, split among the workers (each runs as many threads).
                edit(environments, ENV, {
                    "training.kubernetes.workers": workers,
                    "training.kubernetes.resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"cpu": str(CORES // workers), "memory": "8Gi"}},
                })  # fmt: skip
                _cli("infra", "up", ENV)  # the workers' network policy and quota
                results.append(_train(namespace, uri, rows, workers))
                print(f"  {rows:,} rows, {workers} worker(s): done", flush=True)
    _report(results, pushes)


def _push_with_the_platform_s_user(environments: Path) -> None:
    """The Job's code image goes to the platform's registry as the package stage's does (the
    password first, as a secret: the file is valid without it; the edit commits both)."""
    import yaml
    from modelyard.infra.automation import select_stack
    from modelyard.pipelines.cluster_demo import PLATFORM
    from pulumi import automation as auto

    platform = yaml.safe_load((environments / f"Pulumi.{PLATFORM}.yaml").read_text())
    package = platform["config"]["modelyard:pipeline"]["package"]
    select_stack(ENV, lambda line: None).set_config(
        "modelyard:pipeline.package.password",
        auto.ConfigValue(os.environ["MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD"], secret=True),
        path=True,
    )
    edit(environments, ENV, {"pipeline.package.registry": package["registry"],
                             "pipeline.package.username": package["username"]})  # fmt: skip


def _cli(*args: str) -> str:
    done = subprocess.run([MODELYARD, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"modelyard {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done.stdout


def _train(namespace: str, uri: str, rows: int, workers: int) -> dict[str, Any]:
    from modelyard.contracts.state import pipeline_dir
    from modelyard.pipelines.pipeline.training_job import job_name

    run_id = f"bench-{rows}-{workers}"
    peaks: dict[int, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(namespace, job_name(run_id), peaks, stop))
    watcher.start()
    started = time.perf_counter()
    try:
        _cli("pipeline", "stage", "train", ENV, "--data", uri, "--run-id", run_id)
    finally:
        stop.set()
        watcher.join()
    stage = time.perf_counter() - started
    if len(peaks) < workers:
        raise SystemExit(f"found the memory cgroup of {len(peaks)} of {workers} worker pod(s)")
    auc = json.loads((pipeline_dir(run_id) / "context.json").read_text())["metrics"]["roc_auc"]
    return {"rows": rows, "workers": workers, "stage": stage,
            "job": _job_seconds(namespace, job_name(run_id)), "auc": auc,
            "peaks": [peaks.get(rank, 0) for rank in range(workers)]}  # fmt: skip


def _watch(namespace: str, job: str, peaks: dict[int, int], stop: threading.Event) -> None:
    """Each worker's peak memory: its pod's memory cgroup (cgroup v1)."""
    from modelyard.pipelines.errors import PipelineError
    from modelyard.pipelines.pipeline.training_job import Kube, worker_rank

    kube = Kube(namespace)
    found: dict[str, tuple[int, str]] = {}  # pod uid: rank, its cgroup's peak file
    listed = 0.0
    while not stop.is_set():
        if time.monotonic() - listed > 2:
            listed = time.monotonic()
            with contextlib.suppress(PipelineError):  # the next listing will do
                for pod in kube.pods(job):
                    uid = pod["metadata"]["uid"]
                    paths = [found for pattern in _pod_cgroups(uid)
                             for found in glob.glob(pattern, recursive=True)]  # fmt: skip
                    if paths:
                        found[uid] = (worker_rank(pod), paths[0])
        for rank, path in found.values():
            with contextlib.suppress(OSError, ValueError):  # ended: its last reading stands
                peaks[rank] = max(peaks.get(rank, 0), int(Path(path).read_text()))
        stop.wait(0.3)


def _pod_cgroups(uid: str) -> tuple[str, ...]:
    """Where a pod's memory cgroup (v1) is: under the node container's, named the systemd
    driver's way (kubepods-burstable-pod<uid, dashes as underscores>.slice) or cgroupfs' way."""
    root = "/sys/fs/cgroup/memory/**"
    return (f"{root}/*pod{uid.replace('-', '_')}.slice/memory.max_usage_in_bytes",
            f"{root}/pod{uid}/memory.max_usage_in_bytes")  # fmt: skip


def _job_seconds(namespace: str, job: str) -> float:
    """The Job from its start to its completion: pods scheduled, the data fetched, the fit,
    the logging (the stage removes the pods when done; the Job stays)."""
    from datetime import datetime

    from modelyard.pipelines.pipeline.training_job import Kube

    status = Kube(namespace).json("get", "job", job)["status"]
    start, end = (datetime.fromisoformat(status[k].replace("Z", "+00:00"))
                  for k in ("startTime", "completionTime"))  # fmt: skip
    return (end - start).total_seconds()


def _report(results: list[dict[str, Any]], pushes: list[tuple[int, int, float]]) -> None:
    memory = _available_bytes()
    for rows, size, seconds in pushes:
        print(f"data push of {rows:,} rows ({size / 2**20:.1f} MiB, validated, then uploaded to "
              f"staging's MLflow): {seconds:.1f} s")  # fmt: skip
    print(
        f"\n{'rows':>10} {'workers':>7} {'stage s':>8} {'Job s':>8} {'AUC':>7}  peak memory per worker"
    )
    for r in results:
        peaks = ", ".join(f"{p / 2**20:,.0f} MiB" for p in r["peaks"])
        print(f"{r['rows']:>10,} {r['workers']:>7} {r['stage']:>8.1f} {r['job']:>8.1f} "
              f"{r['auc']:>7.4f}  {peaks}")  # fmt: skip
    small, large = SIZES
    print(
        f"\nlargest data (extrapolated from {small:,} and {large:,} rows; this machine: "
        f"{memory / 2**30:.1f} GiB):"
    )
    for workers in WORKERS:
        at = {r["rows"]: max(r["peaks"]) for r in results if r["workers"] == workers}
        per_row = (at[large] - at[small]) / (large - small)
        fixed = at[large] - per_row * large
        here = (memory / workers - fixed) / per_row  # every worker on this one machine
        spread = (memory - fixed) / per_row  # each worker on a machine like this one
        print(f"  {workers} worker(s): {per_row:,.0f} bytes a row on the largest worker, "
              f"{fixed / 2**20:,.0f} MiB before any row; about {here / 1e6:,.1f}M rows on this "
              f"machine, {spread / 1e6:,.1f}M rows with a machine like it per worker")  # fmt: skip
    one, two = ({r["rows"]: r["auc"] for r in results if r["workers"] == w} for w in WORKERS)
    gap = max(abs(one[n] - two[n]) for n in SIZES)
    print(f"AUC, 2 workers against 1: largest difference {gap:.4f} (tolerance 0.01: "
          f"{'met' if gap <= 0.01 else 'NOT met'})")  # fmt: skip


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _measure()
