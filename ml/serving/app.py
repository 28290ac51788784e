"""Request handling of one worker: routing between versions, scoring, metrics, live samples."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from modelyard.ml.monitoring.sampling import SampleWriter
from modelyard.ml.serving import metrics
from modelyard.ml.serving.auth import Guard
from modelyard.ml.serving.inputs import RequestError, parse_body
from modelyard.ml.serving.model import LoadedModel, decode_row
from modelyard.ml.serving.routing import Routing, sticky_bucket

log = logging.getLogger("modelyard.serving")

JSON = [(b"Content-Type", b"application/json")]
CANDIDATE_FAILED = "422"  # the candidate could not score a request the stable version could


@dataclass(frozen=True)
class Snapshot:
    routing: Routing
    stable: LoadedModel | None
    candidate: LoadedModel | None


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    after: Callable[[], None] | None = None  # work to do once the answer is sent (shadow scoring)


def _error(status: int, message: str, **extra: object) -> Response:
    return Response(status, orjson.dumps({"error_code": status, "message": message, **extra}), JSON)


class ScoringApp:
    def __init__(
        self,
        multiproc_dir: str,
        samples: SampleWriter | None,
        max_rows: int,
        image_digest: str = "",
        guard: Guard | None = None,
    ) -> None:
        self.guard = guard or Guard("")
        self.snapshot = Snapshot(Routing(), None, None)
        self.multiproc_dir = multiproc_dir
        self.samples = samples
        self.max_rows = max_rows
        self.image_digest = image_digest
        self.summaries = metrics.RowSummaries()
        self._random = random.Random()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    # -- routes -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        route = path.split("?", 1)[0]
        if route in ("/invocations", "/metrics"):
            refused = self.guard.check(headers.get("authorization"), route == "/metrics")
            if refused is not None:
                self._child(metrics.UNAUTHORIZED, route[1:], refused.reason).inc()
                denied = _error(401, f"{route}: {refused.message}")
                denied.headers = [*JSON, (b"WWW-Authenticate", refused.challenge)]
                return denied
        if route == "/invocations":
            if method != "POST":
                return _error(405, "use POST /invocations")
            return self.invocations(headers, body, path)
        if method not in ("GET", "HEAD"):
            return _error(405, f"{route} answers GET")
        if route in ("/ping", "/health"):
            return self.health()
        if route == "/version":
            return Response(200, orjson.dumps(self.version_info()), JSON)
        if route == "/metrics":
            self.summaries.flush()
            return Response(
                200,
                metrics.render(self.multiproc_dir),
                [(b"Content-Type", b"text/plain; version=0.0.4")],
            )
        return _error(
            404, f"no route {route}: try POST /invocations, GET /ping, /health, /version, /metrics"
        )

    def health(self) -> Response:
        snap = self.snapshot
        if snap.stable is None:
            return _error(503, snap.routing.message, ready=False)
        return Response(
            200, orjson.dumps({"ready": True, "model_version": snap.stable.version}), JSON
        )

    def version_info(self) -> dict[str, object]:
        snap = self.snapshot
        info: dict[str, object] = {
            "ready": snap.stable is not None,
            "message": snap.routing.message,
            "image_digest": self.image_digest or None,
            "stable": snap.stable.describe() if snap.stable else None,
            "candidate": snap.candidate.describe() if snap.candidate else None,
            "mode": snap.routing.mode,
            "candidate_weight": snap.routing.weight if snap.candidate else 0,
            "worker_pid": os.getpid(),
            # Whether scoring and /metrics ask for a bearer token (ml/serving/auth.py).
            "auth": "open" if self.guard.open else "bearer",
        }
        if snap.stable is not None:
            info.update(
                model_name=snap.stable.name,
                model_version=snap.stable.version,
                model_digest=snap.stable.digest,
                run_id=snap.stable.run_id,
            )
        return info

    # -- scoring ------------------------------------------------------------------------------
    def invocations(self, headers: dict[str, str], body: bytes, path: str) -> Response:
        started = time.perf_counter()
        snap = self.snapshot  # one read: a swap mid-request cannot mix versions
        stable, candidate = snap.stable, snap.candidate
        if stable is None:
            metrics.REQUESTS.labels("none", "503").inc()
            return _error(503, snap.routing.message, ready=False)
        content_type = headers.get("content-type", "application/json")
        target = stable
        if candidate is not None and snap.routing.mode != "shadow":
            target = candidate if self._to_candidate(snap.routing, headers, path) else stable
        response = self._score(target, content_type, body)
        answered = target
        if target is candidate and response.status >= 400 and response.status != 413:
            # Retry on the stable version so users never pay for a bad canary; the failure counts
            # against the candidate unless the stable version refuses the request too (then it
            # is the client's mistake, answered as such).
            failed = response
            response = self._score(stable, content_type, body)
            answered = stable
            if response.status < 400 or failed.status >= 500:
                status = str(failed.status) if failed.status >= 500 else CANDIDATE_FAILED
                metrics.REQUESTS.labels(candidate.version, status).inc()
        self._count(answered, response.status, started)
        if candidate is not None and snap.routing.mode == "shadow" and response.status == 200:
            response.after = lambda: self._shadow(candidate, content_type, body)
        return response

    def _to_candidate(self, routing: Routing, headers: dict[str, str], path: str) -> bool:
        if routing.mode == "ab":
            key = headers.get("x-request-key") or _query_param(path, "key")
            if key:
                return sticky_bucket(key) < routing.weight
        return self._random.random() * 100 < routing.weight

    def _score(self, model: LoadedModel, content_type: str, body: bytes) -> Response:
        try:
            matrix = parse_body(body, content_type, model, self.max_rows)
        except RequestError as exc:
            return _error(exc.status, exc.message, model_version=model.version)
        try:
            scores = model.predict(matrix)
        except Exception as exc:  # a model that cannot predict must not take the server down
            log.exception("model %s version %s failed to predict", model.name, model.version)
            return _error(
                500,
                f"model version {model.version} failed to predict: {exc}",
                model_version=model.version,
            )
        self.summaries.add(model.version, model.summary_columns, matrix, scores, model.prediction)
        self._child(metrics.BATCH_ROWS, model.version).observe(len(scores))
        if self.samples is not None and self.samples.wants():
            for i in self.samples.pick(len(scores)):
                self.samples.add(model.version, decode_row(model, matrix[i]),
                                 model.prediction.sample_value(scores[i]))  # fmt: skip
        version = model.version.encode()
        body_out = (
            b'{"predictions":'
            + orjson.dumps(scores, option=orjson.OPT_SERIALIZE_NUMPY)
            + model.prediction.extra_answer(scores)
            + b',"model_version":"'
            + version
            + b'"}'
        )
        return Response(200, body_out, [*JSON, (b"X-Model-Version", version)])

    def _count(self, model: LoadedModel, status: int, started: float) -> None:
        self._child(metrics.REQUESTS, model.version, str(status)).inc()
        if status < 400:
            self._child(metrics.LATENCY, model.version).observe(time.perf_counter() - started)

    def _child(self, metric: Any, *labels: str) -> Any:
        """prometheus-client's labels() costs more than the update itself: keep the children."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _shadow(self, candidate: LoadedModel, content_type: str, body: bytes) -> None:
        started = time.perf_counter()
        response = self._score(candidate, content_type, body)
        status = CANDIDATE_FAILED if 400 <= response.status < 500 else str(response.status)
        metrics.REQUESTS.labels(candidate.version, status).inc()
        if response.status < 400:
            metrics.LATENCY.labels(candidate.version).observe(time.perf_counter() - started)

    def flush(self) -> None:
        self.summaries.flush()
        if self.samples is not None:
            self.samples.flush()


def _query_param(path: str, name: str) -> str | None:
    _, _, query = path.partition("?")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None
