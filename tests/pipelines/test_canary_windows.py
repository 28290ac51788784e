"""The canary's step window on Kubernetes: the pods keep their counters across steps (a step no
longer restarts them), so a step judges only what each pod answered since it began."""

from __future__ import annotations

from modelyard.ml.serving.rollout import window
from modelyard.pipelines.progressive import _since


def exposition(version: str, ok: int, failed: int) -> str:
    return (
        "# TYPE modelyard_requests_total counter\n"
        f'modelyard_requests_total{{model_version="{version}",status="200"}} {ok}\n'
        f'modelyard_requests_total{{model_version="{version}",status="500"}} {failed}\n'
    )


def test_a_step_counts_each_pod_from_where_it_stood_when_the_step_began() -> None:
    began = {"pod-a#0": exposition("9", 100, 50), "pod-b#0": exposition("9", 40, 0)}
    now = {
        "pod-a#0": exposition("9", 130, 50),  # 30 answers since, no new failure
        "pod-b#1": exposition("9", 5, 1),  # restarted since: all of its counters are new
    }
    step = window(_since(now, began)["9"], None)
    assert step.requests == 36 and step.errors == 1
    # Against a baseline of the same moment, nothing happened yet.
    assert window(_since(began, began)["9"], None).requests == 0
