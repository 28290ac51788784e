"""The production path on the local Kubernetes (issue #16): `pulumi up` of staging from nothing
(namespace, policies, pull secret, Deployment, Service, then the rollout), `pulumi up` of an image
change (the pipeline's deploy-staging stage: the new version's image, pushed by the package stage),
and the time from `pipeline run` start to production pods serving the new version (production's
canary held STEP seconds a step). The cluster's own start is `make bench`'s `cluster`.

Sets production up as `make demo-cluster` does, in a state folder of its own. Needs Docker,
`make tools` and `make cluster-tools`; about 6 minutes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks._cluster_project import demo_production, edit, run_in_own_state

STEP = 5.0  # production's monitoring.canaryStepSeconds (the demo's)


def main() -> None:
    run_in_own_state("benchmarks.production_path", "production-path")


def _measure() -> None:
    from modelyard.contracts.environment import load_environment
    from modelyard.infra.automation import run
    from modelyard.ml.data.sample import generate_churn
    from modelyard.pipelines.cluster_demo import PLATFORM
    from modelyard.pipelines.cluster_load import start_load
    from modelyard.pipelines.demo import DEMO_ROWS
    from modelyard.pipelines.deploy_targets import deploy_environment
    from modelyard.pipelines.errors import PipelineError
    from modelyard.pipelines.pipeline.runner import run_pipeline

    with demo_production() as environments:
        run("staging", "destroy", lambda line: None)
        started = time.perf_counter()
        deploy_environment("staging", lambda line: None)  # from nothing: staging's version again
        first_up = time.perf_counter() - started

        # New data: a new version, its own image; better or not, it goes through (no champion).
        for env in ("staging", "production"):
            edit(environments, env, {"promotion.champion": None})
        edit(environments, "production", {"monitoring.canaryStepSeconds": STEP})
        data = Path.cwd() / "churn-bench.csv"
        generate_churn(DEMO_ROWS, seed=21).to_csv(data, index=False)
        stages: dict[str, float] = {}

        def on_stage(name: str, status: str, seconds: float) -> None:
            if status == "passed":
                stages[name] = seconds

        # Production's callers: its canary is judged on their requests.
        serving = load_environment("production").serving
        assert serving.image is not None
        rows = generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
        load = start_load(serving.namespace, "production-serving", serving.image, json.loads(rows))
        started = time.perf_counter()
        try:
            ctx = run_pipeline(PLATFORM, data, lambda line: None, on_stage)
        except PipelineError as exc:
            raise SystemExit(str(exc)) from None
        finally:
            counted = load.stop()
        to_production = time.perf_counter() - started - stages.get("notify", 0.0)
    if not ctx.promoted.get("production"):
        raise SystemExit("the new version did not reach production; nothing to measure")
    print(f"{'production path':<44} seconds")
    print(f"  {'pulumi up of staging, from nothing':<42} {first_up:7.1f}")
    print(f"  {'pulumi up of staging, image change':<42} {stages['deploy-staging']:7.1f}"
          "   (deploy-staging: promotion, up, rollout)")  # fmt: skip
    print(f"  {'pipeline run start to production serving':<42} {to_production:7.1f}"
          f"   (canary 10/50/100%, {STEP:g} s holds)")  # fmt: skip
    for name in ("train", "package", "deploy-production"):
        print(f"    {name:<40} {stages[name]:7.1f}")
    print(f"  production's callers: {counted['failed']} of {counted['sent']} requests failed "
          "(goal: none)")  # fmt: skip


if __name__ == "__main__":
    _measure()
