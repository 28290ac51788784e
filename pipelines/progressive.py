"""A canary on Kubernetes, stepped under analysis the way Flagger or Argo Rollouts step one.

`modelyard promote` starts it: the environment file says desiredVersion (the candidate),
stableVersion and canaryWeight (the first of promotion.rollout.canarySteps), and `pulumi up` gives
every serving pod both versions and that weight: each pod splits its requests in-process, so the
weight is a share of requests, not of pods. The deploy then, for each step:
- holds for monitoring.canaryStepSeconds, reading every serving pod's /metrics (through the API
  server) every few seconds, and judges the candidate on its own requests against
  promotion.rollout.maxErrorRate and maxLatencyP99Ms, the stable version's figures beside them;
- passes the step once the hold is over and the candidate answered monitoring.canaryMinRequests,
  writes the next weight into the file (a commit pushed, with modelyard:promotion.git) and runs
  `pulumi up` again; the last step (100) drops the
  stable version;
- fails it as soon as the candidate breaks a limit, or when it never got enough requests within
  three holds: then it rolls back durably (the alias, the file and a history record carrying the
  figures, through `modelyard rollback`'s transaction) and runs `pulumi up`, so a restart of
  anything serves the stable version again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.contracts import variables
from modelyard.contracts.environment import Environment, load_environment
from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.ml.serving.metrics import parse_version_stats
from modelyard.ml.serving.rollout import Limits, VersionWindow, verdict, window
from modelyard.pipelines.errors import RolledBack

Say = Callable[[str], None]
Apply = Callable[[str], object]  # `pulumi up` of the environment, waiting for the rollout
POLL_SECONDS = 2.0
HOLDS_FOR_TRAFFIC = 3  # holds without enough requests before the candidate counts as failed


@dataclass(frozen=True)
class StepAnalysis:
    weight: int
    candidate: VersionWindow
    stable: VersionWindow
    seconds: float
    failure: str | None

    def evidence(self, candidate: int, stable: int) -> str:
        def figures(of: VersionWindow) -> str:
            return (
                f"{of.requests:.0f} requests, error rate {of.error_rate:.2%}, "
                f"p99 {of.latency_p99_ms():.1f} ms"
            )

        return (
            f"at {self.weight}% after {self.seconds:.0f} s: candidate v{candidate} "
            f"{figures(self.candidate)}; stable v{stable} {figures(self.stable)}"
        )


def canary_in_progress(environment: Environment, model: str) -> bool:
    release = environment.release(model)
    return (
        environment.promotion.rollout.strategy == "canary"
        and release.stable_version is not None
        and release.desired_version is not None
        and release.canary_weight < 100
    )


def run_canary(target: str, model: str, namespace: str, apply: Apply, say: Say) -> str:
    """Step `model`'s canary the environment file describes to 100%, or roll it back; what
    happened. Only that model's pods are judged, and only its release keys written."""
    from modelyard.pipelines.promotion import rollback
    from modelyard.pipelines.promotion.engine import write_rollout_step

    environment = load_environment(target)
    rollout, monitoring = environment.promotion.rollout, environment.monitoring
    release = environment.release(model)
    candidate, stable = release.desired_version, release.stable_version
    assert candidate is not None and stable is not None
    limits = Limits(
        rollout.max_error_rate, rollout.max_latency_p99_ms, monitoring.canary_min_requests
    )
    weight = release.canary_weight
    started = time.monotonic()
    while True:
        analysis = _analyse(namespace, model, weight, candidate, stable, limits,
                            monitoring.canary_step_seconds)  # fmt: skip
        evidence = analysis.evidence(candidate, stable)
        if analysis.failure is not None:
            reason = (
                f"canary v{candidate} failed its analysis: {analysis.failure} ({evidence}); "
                f"rolled back to v{stable} automatically"
            )
            say(f"{target}: {reason}")
            rollback(model, target, str(stable), reason)
            apply(target)
            raise RolledBack(f"{target}: {reason}")
        steps = [step for step in rollout.canary_steps if step > weight]
        weight, before = steps[0], weight
        say(f"{target}: step passed {evidence}; next {weight}%")
        last = weight == 100
        for note in write_rollout_step(
            model,
            target,
            {"canaryWeight": None, "stableVersion": None, "stableImage": None}
            if last
            else {"canaryWeight": weight},
            f"canary v{candidate} {before}% -> {weight}% ({evidence})",
        ):
            say(note)
        apply(target)
        if last:
            return (
                f"canary v{candidate} passed every step ({', '.join(map(str, rollout.canary_steps))}%"
                f") in {time.monotonic() - started:.0f} s and serves all requests"
            )


def _analyse(
    namespace: str, model: str, weight: int, candidate: int, stable: int, limits: Limits,
    hold: float,
) -> StepAnalysis:  # fmt: skip
    """Watch the step until it passes (held long enough, enough requests) or fails."""
    started = time.monotonic()
    while True:
        stats = parse_version_stats(*serving_pod_metrics(namespace, model))
        elapsed = time.monotonic() - started
        ours = window(stats.get(str(candidate), {}), None)
        theirs = window(stats.get(str(stable), {}), None)
        failure = verdict(ours, limits)
        starved = elapsed >= hold * HOLDS_FOR_TRAFFIC and ours.requests < limits.min_requests
        if failure is None and starved:
            failure = (
                f"too little traffic to judge: {ours.requests:.0f} requests, "
                f"canaryMinRequests {limits.min_requests}"
            )
        if failure is not None:
            return StepAnalysis(weight, ours, theirs, elapsed, failure)
        if elapsed >= hold and ours.requests >= limits.min_requests:
            return StepAnalysis(weight, ours, theirs, elapsed, None)
        time.sleep(POLL_SECONDS)


# Run inside a serving pod (`kubectl exec`): its /metrics, asked with the pod's own metrics token
# when it has one, so the token never leaves the pod (the API server's pod proxy would drop an
# Authorization header anyway: it authenticates the caller with it).
_SCRAPE = f"""
import os, sys, urllib.request
folder = os.environ.get({variables.AUTH_DIR!r})
token = open(os.path.join(folder, {variables.AUTH_METRICS_FILE!r})).read().strip() if folder else ""
request = urllib.request.Request("http://127.0.0.1:{SERVING_PORT}/metrics",
                                 headers={{"Authorization": "Bearer " + token}} if token else {{}})
sys.stdout.write(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def serving_pod_metrics(namespace: str, model: str | None = None) -> list[str]:
    """The /metrics answer of each running serving pod (of `model`, or of every model):
    counters since that pod started, and each step's `pulumi up` starts new pods, so they count
    that step alone."""
    from modelyard.pipelines.deploy_targets import kubectl, running_serving_pods

    answers = []
    for pod in running_serving_pods(namespace, model):
        if pod["metadata"].get("deletionTimestamp"):
            continue  # an old pod on its way out
        scraped = subprocess.run(
            [kubectl(), "exec", "--namespace", namespace, pod["metadata"]["name"], "--",
             "python3", "-c", _SCRAPE],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if scraped.returncode == 0:
            answers.append(scraped.stdout)
    return answers
