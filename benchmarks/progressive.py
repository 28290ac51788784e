"""Progressive delivery on the local Kubernetes (issue #17): the time of each canary step and of a
full canary rollout, and the requests lost while each strategy switches versions (the goal: none),
counted by callers inside the cluster (pipelines/cluster_load.py).

It sets production up the way `make demo-cluster` does, in a state folder of its own (the cluster,
the platform stack, the pipeline's first run), then promotes new registrations of the served model
through staging into production and deploys them with `modelyard deploy`'s code under load. Needs
Docker, `make tools` and `make cluster-tools`; about 6 minutes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks._cluster_project import demo_production, edit, run_in_own_state

STEP = 5.0  # monitoring.canaryStepSeconds for the measurement (the demo's)
# Before #25, each step was a rolling restart of every serving pod (the weight an environment
# variable): measured by this benchmark on this machine (README, session 11).
BEFORE = "each step 17-28 s, the full rollout 69 s"


def main() -> None:
    run_in_own_state("benchmarks.progressive", "progressive-delivery")


def _measure() -> None:
    with demo_production() as environments:
        edit(environments, "staging", {"promotion.champion": None})
        edit(environments, "production", {"promotion.champion": None,
                                          "monitoring.canaryStepSeconds": STEP})  # fmt: skip
        canary = _rollout(environments, "canary")
        blue_green = _rollout(environments, "blue-green", rollback=True)
        rolling = _rollout(environments, "rolling", rollback=True)
    steps = canary["steps"]
    print(f"canary {'/'.join(str(w) for w, _ in steps)}% (hold {STEP:g} s a step, analysis on "
          "the pods' /metrics; a step is a pulumi up of the weight's ConfigMap, no restart)")  # fmt: skip
    for weight, seconds in steps:
        print(f"  step at {weight:>3}%: {seconds:6.1f} s")
    print(f"  end (stable version dropped, pods replaced): {canary['end']:6.1f} s")
    print(f"  full rollout:   {canary['seconds']:6.1f} s")
    print(f"  before (a rolling restart per step): {BEFORE}")
    print("requests lost while switching (callers inside the cluster; goal: none)")
    for name, result in (("canary", canary), ("blue-green", blue_green), ("rolling", rolling)):
        back = f", rollback {result['rollback']:.1f} s" if "rollback" in result else ""
        print(f"  {name:<11} {result['failed']:>4} of {result['sent']:>6} "
              f"(switch {result['seconds']:.1f} s{back})")  # fmt: skip
    lost = canary["failed"] + blue_green["failed"] + rolling["failed"]
    print(f"goal {'met' if lost == 0 else 'NOT met'}: {lost} requests lost")


def _rollout(environments: Path, strategy: str, rollback: bool = False) -> dict[str, Any]:
    """Promote a new registration of what production serves with `strategy`, deploy it under load
    (and roll it back); the seconds of each step, the callers' counts."""
    from mlflow import MlflowClient
    from modelyard.contracts.environment import load_environment
    from modelyard.ml.data.sample import generate_churn
    from modelyard.pipelines.cluster_load import start_load
    from modelyard.pipelines.deploy_targets import deploy_environment
    from modelyard.pipelines.promotion import envfile, promote
    from modelyard.pipelines.promotion import rollback as roll_back

    edit(environments, "production", {"promotion.rollout.strategy": strategy})
    deploy_environment("production", lambda line: None)  # the current version, this strategy's way
    client = MlflowClient()
    served = client.get_model_version_by_alias("churn", "production")
    copy = client.create_model_version(
        "churn", served.source, run_id=served.run_id, tags=served.tags,
        model_id=served.source.removeprefix("models:/"),
    ).version  # fmt: skip
    for env in ("staging", "production"):
        image = envfile.read_serving(load_environment(env).path)["image"]
        outcome = promote("churn", env, str(copy), image=image)
        assert outcome.promoted, [g.evidence for g in outcome.gates if not g.passed]
    serving = load_environment("production").serving
    assert serving.image is not None
    rows = generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
    load = start_load(serving.namespace, "production-serving", serving.image, json.loads(rows))
    marks: list[tuple[int, float]] = []

    ended: list[float] = []

    def say(line: str) -> None:
        if "step passed at " in line:
            marks.append((int(line.split("step passed at ")[1].split("%")[0]), time.perf_counter()))
        elif "the rollout ends" in line:
            ended.append(time.perf_counter())

    try:
        started = time.perf_counter()
        deploy_environment("production", say)
        finished = time.perf_counter()
        result: dict[str, Any] = {"seconds": finished - started}
        # Each step from its start to its pass; 100%: from the last pass to its confirmation.
        last = ended[0] if ended else finished
        times = [started] + [t for _, t in marks] + [last]
        weights = [w for w, _ in marks] + [100]
        result["steps"] = [(w, times[i + 1] - times[i]) for i, w in enumerate(weights)]
        result["end"] = finished - last
        if rollback:
            roll_back("churn", "production", None, f"benchmark: {strategy} rollback")
            started = time.perf_counter()
            deploy_environment("production", lambda line: None)
            result["rollback"] = time.perf_counter() - started
        time.sleep(2)  # the last answers reach the callers' count
    finally:
        counted = load.stop()
    result.update(sent=counted["sent"], failed=counted["failed"])
    return result


if __name__ == "__main__":
    _measure()
