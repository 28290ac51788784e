"""A canary on Kubernetes, stepped under analysis the way Flagger or Argo Rollouts step one.

`modelyard promote` starts it: the environment file says desiredVersion (the candidate),
stableVersion and canaryWeight (the first of promotion.rollout.canarySteps), and `pulumi up` gives
every serving pod both versions and that weight (a mounted ConfigMap): each pod splits its
requests in-process, so the weight is a share of requests, not of pods. The deploy then, for each
step:
- waits until every serving pod answers with the step's weight (its /version), then holds for
  monitoring.canaryStepSeconds, reading every serving pod's /metrics (inside the pod) every few
  seconds, and judges the candidate on the requests it answered since the step began against
  promotion.rollout.maxErrorRate and maxLatencyP99Ms, the stable version's figures beside them;
- passes the step once the hold is over and the candidate answered monitoring.canaryMinRequests,
  writes the next weight into the file (a commit pushed, with modelyard:promotion.git) and runs
  `pulumi up` again, which changes the ConfigMap alone: the same pods take the new share, none
  restarts. Once 100% is confirmed, it clears stableVersion (another commit and `up`): the pods
  are replaced by ones serving the candidate alone, the rollout's end;
- fails it as soon as the candidate breaks a limit, or when it never got enough requests within
  three holds: then it rolls back durably (the alias, the file and a history record carrying the
  figures, through `modelyard rollback`'s transaction) and runs `pulumi up`, so a restart of
  anything serves the stable version again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.contracts import variables
from modelyard.contracts.environment import Environment, load_environment
from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.ml.serving.metrics import parse_version_stats
from modelyard.ml.serving.rollout import Limits, VersionWindow, verdict, window
from modelyard.pipelines.errors import PipelineError, RolledBack

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
    while weight < 100:  # (a deploy stopped after the step to 100% goes on with the ending)
        _await_weight(namespace, model, weight)
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
        for note in write_rollout_step(
            model, target, {"canaryWeight": weight},
            f"canary v{candidate} {before}% -> {weight}% ({evidence})",
        ):  # fmt: skip
            say(note)
        apply(target)
    _await_weight(namespace, model, 100)
    say(f"{target}: every pod sends v{candidate} all requests: the rollout ends")
    for note in write_rollout_step(
        model, target, {"canaryWeight": None, "stableVersion": None, "stableImage": None},
        f"canary v{candidate} done: v{stable} no longer loaded beside it",
    ):  # fmt: skip
        say(note)
    apply(target)
    return (
        f"canary v{candidate} passed every step ({', '.join(map(str, rollout.canary_steps))}%) "
        f"in {time.monotonic() - started:.0f} s and serves all requests"
    )


def _await_weight(namespace: str, model: str, weight: int, timeout: float = 180.0) -> None:
    """Until every running serving pod of `model` splits by `weight` (the kubelet has put the
    ConfigMap's new value in its files, the server has read it)."""
    from modelyard.pipelines.deploy_targets import kubectl, running_serving_pods

    deadline = time.monotonic() + timeout
    while True:
        behind = []
        for pod in running_serving_pods(namespace, model):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            name = pod["metadata"]["name"]
            path = f"/api/v1/namespaces/{namespace}/pods/{name}:{SERVING_PORT}/proxy/version"
            asked = subprocess.run([kubectl(), "get", "--raw", path],
                                   capture_output=True, text=True, check=False)  # fmt: skip
            said = json.loads(asked.stdout) if asked.returncode == 0 else {}
            if said.get("candidate_weight") != weight:
                behind.append(f"{name} at {said.get('candidate_weight', '?')}%")
        if not behind:
            return
        if time.monotonic() > deadline:
            raise PipelineError(
                f"{namespace}: serving pods still not at {weight}% after {timeout:.0f} s "
                f"({', '.join(behind)}): see `kubectl describe pods --namespace {namespace}`"
            )
        time.sleep(POLL_SECONDS)


def _analyse(
    namespace: str, model: str, weight: int, candidate: int, stable: int, limits: Limits,
    hold: float,
) -> StepAnalysis:  # fmt: skip
    """Watch the step until it passes (held long enough, enough requests) or fails. The pods'
    counters run on across steps: each step counts from what they said when it began."""
    started = time.monotonic()
    baseline = serving_pod_metrics(namespace, model)
    while True:
        stats = _since(serving_pod_metrics(namespace, model), baseline)
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


def _since(now: dict[str, str], then: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every pod's counts since `then` (a pod new since, or restarted, counts from zero), added
    up per version as parse_version_stats gives them."""
    total: dict[str, dict[str, Any]] = {}
    for pod, exposition in now.items():
        current = parse_version_stats(exposition)
        before = parse_version_stats(then[pod]) if pod in then else {}
        for version, kinds in current.items():
            into = total.setdefault(version, {})
            for kind, counts in kinds.items():
                earlier = before.get(version, {}).get(kind, {})
                sums = into.setdefault(kind, {})
                for key, value in counts.items():
                    sums[key] = sums.get(key, 0.0) + value - earlier.get(key, 0.0)
    return total


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


def serving_pod_metrics(namespace: str, model: str | None = None) -> dict[str, str]:
    """The /metrics answer of each running serving pod (of `model`, or of every model), by pod
    and container restarts (a restarted server's counters start again): counters since that
    server started."""
    from modelyard.pipelines.deploy_targets import kubectl, running_serving_pods

    answers = {}
    for pod in running_serving_pods(namespace, model):
        if pod["metadata"].get("deletionTimestamp"):
            continue  # an old pod on its way out
        name = pod["metadata"]["name"]
        restarts = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))
        scraped = subprocess.run(
            [kubectl(), "exec", "--namespace", namespace, name, "--", "python3", "-c", _SCRAPE],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if scraped.returncode == 0:
            answers[f"{name}#{restarts}"] = scraped.stdout
    return answers
