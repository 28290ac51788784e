"""`python -m modelyard.ml.serving [OPTIONS.json]`: run the server.

With an options file (written by the tests); without one, from the environment variables of
contracts/variables.py, as a container, a pod and a local deploy run it: the environment's
settings (contracts/serving_options.py), MODELYARD_MODEL_URI (default: the model baked into the
image at /opt/model, if any), MODELYARD_HOST/PORT (0.0.0.0:8080), MODELYARD_WORKERS and
MODELYARD_STATE_DIR (a writable folder; the image's root filesystem is read-only).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import orjson
from modelyard.contracts import variables as v
from modelyard.ml.serving.rollout import Limits
from modelyard.ml.serving.supervisor import ServeOptions, Supervisor


def options_to_json(options: ServeOptions) -> bytes:
    raw = asdict(options)
    raw["state_dir"] = str(options.state_dir)
    return orjson.dumps(raw, option=orjson.OPT_INDENT_2)


def options_from_json(data: bytes) -> ServeOptions:
    raw = orjson.loads(data)
    raw["state_dir"] = Path(raw["state_dir"])
    raw["limits"] = Limits(**raw["limits"])
    raw["canary_steps"] = tuple(raw["canary_steps"])
    raw["rollback_command"] = tuple(raw.get("rollback_command", ()))
    return ServeOptions(**raw)


BAKED_MODEL = Path("/opt/model")


def options_from_environment(env: Mapping[str, str]) -> ServeOptions:
    """The server's options from variables; one left unset keeps ServeOptions' default."""
    baked = str(BAKED_MODEL) if (BAKED_MODEL / "MLmodel").is_file() else ""
    default = ServeOptions(model_uri="")
    limits = Limits(
        max_error_rate=float(env.get(v.MAX_ERROR_RATE, default.limits.max_error_rate)),
        max_latency_p99_ms=float(env.get(v.MAX_LATENCY_P99_MS, default.limits.max_latency_p99_ms)),
        min_requests=int(env.get(v.CANARY_MIN_REQUESTS, default.limits.min_requests)),
    )
    steps = env.get(v.CANARY_STEPS)
    return ServeOptions(
        model_uri=env.get(v.MODEL_URI) or baked,
        candidate_uri=env.get(v.CANDIDATE_URI, ""),
        rollback_command=tuple(orjson.loads(env.get(v.ROLLBACK_COMMAND, "[]"))),
        candidate_weight=int(env.get(v.CANDIDATE_WEIGHT, default.candidate_weight)),
        candidate_weight_file=env.get(v.CANDIDATE_WEIGHT_FILE, ""),
        host=env.get(v.HOST, "0.0.0.0"),
        port=int(env.get(v.PORT, "8080")),
        workers=int(env.get(v.WORKERS, default.workers)),
        state_dir=Path(env.get(v.STATE_DIR, "/tmp/modelyard")),
        strategy=env.get(v.ROLLOUT, default.strategy),
        poll_seconds=float(env.get(v.POLL_SECONDS, default.poll_seconds)),
        canary_steps=tuple(int(s) for s in steps.split(",")) if steps else default.canary_steps,
        ab_split=int(env.get(v.AB_SPLIT, default.ab_split)),
        limits=limits,
        canary_step_seconds=float(env.get(v.CANARY_STEP_SECONDS, default.canary_step_seconds)),
        sample_rate=float(env.get(v.SAMPLE_RATE, default.sample_rate)),
        sample_max_rows=int(env.get(v.SAMPLE_MAX_ROWS, default.sample_max_rows)),
        environment=env.get(v.ENVIRONMENT, ""),
        image_digest=env.get(v.IMAGE_DIGEST, ""),
        auth_dir=env.get(v.AUTH_DIR, ""),
        compile_models=env.get(v.COMPILE_MODELS, "true").lower() != "false",
    )


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(message)s")
    if argv:
        options = options_from_json(Path(argv[0]).read_bytes())
    else:
        options = options_from_environment(os.environ)
    Supervisor(options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
