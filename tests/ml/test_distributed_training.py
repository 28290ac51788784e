"""Training over several workers (training.kubernetes.workers), each a process of its own running
the train stage as a Job's pod does, meeting over LightGBM's network on 127.0.0.1 and the shared
state folder, tracking to a real `mlflow server`. The Job itself is in
tests/cluster/test_training_on_cluster.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
import pandas as pd
import pytest
from modelyard.contracts import tags, variables
from modelyard.contracts.digests import file_digest
from modelyard.ml.data.sample import generate_churn
from modelyard.ml.training.distributed import STALLED_EXIT
from modelyard.pipelines.local_mlflow import free_port

from tests.helpers import REPO, edit_local_training

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def churn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "churn.parquet"
    generate_churn(20_000, seed=11).to_parquet(path, index=False)
    return path


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    """A test that fails midway leaves no worker waiting for a leader that has gone."""
    yield
    for process in Workers.started:
        if process.poll() is None:
            process.kill()
            process.wait()
    Workers.started.clear()


class Workers:
    """One training Job's workers (a Job's uid is its run's name here): started together, each
    with its own address, as pods are; started again, they are the next attempt's pods."""

    started: ClassVar[list[subprocess.Popen[str]]] = []

    def __init__(self, count: int, data: Path, state: Path, run: str) -> None:
        # Each worker's fits listen from its port up, one port per fit: keep them apart.
        self.ports: list[int] = []
        while len(self.ports) < count:
            port = free_port()
            if all(abs(port - other) > 10 for other in self.ports):
                self.ports.append(port)
        self.processes = [self._start(rank, count, data, state, run) for rank in range(count)]
        Workers.started.extend(self.processes)
        # Read as it comes, as a pod's log is: a worker whose output filled an unread pipe would
        # block on its next line (LightGBM's connection retries alone can fill one).
        self.lines: list[list[str]] = [[] for _ in self.processes]
        self.readers = [threading.Thread(target=self._read, args=(rank,), daemon=True)
                        for rank in range(count)]  # fmt: skip
        for reader in self.readers:
            reader.start()

    def _read(self, rank: int) -> None:
        stdout = self.processes[rank].stdout
        assert stdout is not None
        for line in stdout:
            self.lines[rank].append(line)

    def output(self, rank: int) -> str:
        """What worker `rank` has printed; all of it once it has ended."""
        if self.processes[rank].poll() is not None:
            self.readers[rank].join()
        return "".join(self.lines[rank])

    def _start(
        self, rank: int, count: int, data: Path, state: Path, run: str
    ) -> subprocess.Popen[str]:
        environment = {
            **os.environ,
            variables.TRAINING_CONTAINER: "1",  # the stage trains here, as inside the Job's image
            variables.STATE_DIR: str(state),
            variables.PIPELINE_RUN_ID: run,
            variables.TRAINING_WORKERS: str(count),
            variables.TRAINING_RANK: str(rank),
            variables.TRAINING_LISTEN: f"127.0.0.1:{self.ports[rank]}",
            variables.TRAINING_JOB: run,
            # One thread each, as a pod whose CPU limit is 1 gets (the Job sets OMP_NUM_THREADS from
            # it): OpenMP's threads spin while they wait, and two workers of two threads each on
            # two cores, beside another test's, crawl.
            "OMP_NUM_THREADS": "1",
        }
        return subprocess.Popen(
            [sys.executable, "-m", "tests.ml.distributed_worker", str(data)], cwd=REPO,
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def wait(self, timeout: float = 300) -> list[tuple[int, str]]:
        codes = [process.wait(timeout) for process in self.processes]
        return [(code, self.output(rank)) for rank, code in enumerate(codes)]


def _result(output: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return found


def test_two_workers_train_one_ordinary_model_that_scores_as_one_worker_does(
    tracking: str, environments: Path, tmp_path: Path, churn_file: Path
) -> None:
    edit_local_training(environments, "distributed", gate="roc_auc >= 0.6", numBoostRound=60,
               checkpointEvery=10)  # fmt: skip
    ((one_code, one_out),) = Workers(1, churn_file, tmp_path / "one", "one").wait()
    assert one_code == 0, one_out[-3000:]
    (lead_code, lead_out), (follow_code, follow_out) = Workers(
        2, churn_file, tmp_path / "two", "two"
    ).wait()
    assert lead_code == 0, lead_out[-3000:]
    assert follow_code == 0, follow_out[-3000:]
    assert follow_out.count("joining fit") == 1 and "the leader is done" in follow_out
    # The follower read only its rows: half the training rows, and the validation rows.
    held = re.search(r"worker 1 of 2: holding ([\d,]+) rows, ([\d,]+) of them to train on",
                     follow_out)  # fmt: skip
    assert held, follow_out[-3000:]
    rows, training = (int(n.replace(",", "")) for n in held.groups())
    assert 0.25 * 20_000 <= training < rows <= 0.5 * 20_000, held.group(0)

    one, two = _result(one_out), _result(lead_out)
    # Each worker boosted on half the rows, with bins and histograms merged over the network:
    # not the same trees, the same quality.
    assert abs(two["metrics"]["roc_auc"] - one["metrics"]["roc_auc"]) <= 0.01, (one, two)
    run = mlflow.MlflowClient().get_run(two["run_id"])
    assert run.data.tags[tags.Gate.PASSED] == "true"
    # Its lineage names the whole file, as one worker's does.
    assert run.data.tags[tags.Lineage.DATASET_DIGEST] == file_digest(churn_file)
    model = mlflow.lightgbm.load_model(run.data.tags[tags.MODEL_URI])
    assert model.num_trees() > 0  # one LightGBM model the server loads like any other
    rows = generate_churn(50, seed=3).drop(columns=["churned"])
    texts = [name for name in rows.columns if not pd.api.types.is_numeric_dtype(rows[name])]
    for name, categories in zip(texts, model.pandas_categorical, strict=True):
        rows[name] = pd.Categorical(rows[name], categories=categories)  # as the server maps them
    scores = np.asarray(model.predict(rows))
    assert scores.shape == (50,) and ((scores >= 0) & (scores <= 1)).all()


def test_every_trial_is_fit_by_both_workers_and_a_gate_not_met_ends_them_both(
    tracking: str, environments: Path, tmp_path: Path, churn_file: Path
) -> None:
    edit_local_training(environments, "distributed-gate", gate="roc_auc >= 0.999", numBoostRound=30,
               checkpointEvery=10, budget={"trials": 2, "minutes": 10})  # fmt: skip
    (lead_code, lead_out), (follow_code, follow_out) = Workers(
        2, churn_file, tmp_path / "state", "gate"
    ).wait()
    assert lead_code == 2, lead_out[-3000:]  # the kit's reported mistake: the Job fails at once
    assert "not met after 2 trial(s)" in lead_out and "Nothing was registered" in lead_out
    # The follower met the leader again for the second trial, on the same port, then left.
    assert follow_code == 0, follow_out[-3000:]
    assert follow_out.count("joining fit") == 2 and "the leader is done" in follow_out


def test_a_worker_killed_mid_fit_fails_the_attempt_and_the_next_resumes_the_checkpoint(
    tracking: str, environments: Path, tmp_path: Path, churn_file: Path
) -> None:
    # The leader sees its follower's end as an error, or (LightGBM spinning on the closed socket)
    # as rounds that stop coming: either way its attempt ends.
    edit_local_training(environments, "distributed-kill", gate="roc_auc >= 0.6", numBoostRound=200,
               earlyStoppingRounds=None, checkpointEvery=10,
               budget={"trials": 1, "minutes": 10},
               **{"kubernetes.stallTimeoutSeconds": 10})  # fmt: skip
    state = tmp_path / "state"
    first = Workers(2, churn_file, state, "kill")
    checkpoints = state / "training"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*/fit-*/model.txt")):
        assert time.monotonic() < deadline, "no checkpoint written"
        assert first.processes[0].poll() is None, first.output(0)
        time.sleep(0.2)
    first.processes[1].send_signal(signal.SIGKILL)  # a follower's pod is lost
    (lead_code, lead_out), _ = first.wait()
    assert lead_code != 0, lead_out[-3000:]  # the fit cannot go on without it

    (lead_code, lead_out), (follow_code, follow_out) = Workers(2, churn_file, state, "kill").wait()
    assert lead_code == 0, lead_out[-3000:]
    assert follow_code == 0, follow_out[-3000:]
    assert "resume #1" in lead_out and "resuming from its checkpoint" in lead_out
    trials = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("distributed-kill").experiment_id],
        "tags.mlflow.parentRunId = '{}'".format(_result(lead_out)["run_id"]),
    )
    assert len(trials) == 1  # the resumed trial wrote to the run the killed attempt began


def test_a_worker_frozen_mid_fit_ends_the_fit_after_the_stall_timeout_instead_of_hanging(
    tracking: str, environments: Path, tmp_path: Path, churn_file: Path
) -> None:
    """LightGBM's network never times out on Linux: without the watch the leader waits for its
    frozen peer for ever, and its pod stays Running with nothing training."""
    edit_local_training(environments, "distributed-stall", gate="roc_auc >= 0.6",
                        numBoostRound=50_000, earlyStoppingRounds=None, checkpointEvery=10,
                        budget={"trials": 1, "minutes": 10},
                        **{"kubernetes.stallTimeoutSeconds": 10})  # fmt: skip
    state = tmp_path / "state"
    workers = Workers(2, churn_file, state, "stall")
    leader, follower = workers.processes
    deadline = time.monotonic() + 240
    while not list((state / "training").glob("*/fit-*/model.txt")):
        assert time.monotonic() < deadline, "no checkpoint written"
        assert leader.poll() is None, workers.output(0)
        time.sleep(0.2)
    follower.send_signal(signal.SIGSTOP)  # its node froze: it holds its sockets, sends nothing
    try:
        code = leader.wait(timeout=60)
    finally:
        follower.send_signal(signal.SIGCONT)
    output = workers.output(0)
    assert code == STALLED_EXIT, output[-3000:]
    assert "worker 0: no boosting round for" in output, output[-3000:]
    assert "stallTimeoutSeconds is 10" in output
    # Woken to a leader that has gone, the follower ends too (it never trains alone).
    assert follower.wait(timeout=60) != 0
