"""`python -m modelyard.ml.serving [OPTIONS.json]`: run the server.

With an options file (written by local deploy and the tests); without one, from environment
variables, as the container image runs it: MODELYARD_MODEL_URI (default: the model baked into
the image at /opt/model, if any), MODELYARD_HOST/PORT (0.0.0.0:8080), MODELYARD_WORKERS,
MODELYARD_STATE_DIR (a writable folder; the image's root filesystem is read-only),
MODELYARD_ROLLOUT (blue-green, canary, ab, shadow...), MODELYARD_POLL_SECONDS,
MODELYARD_SAMPLE_RATE, MODELYARD_ENVIRONMENT and MODELYARD_IMAGE_DIGEST.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import orjson
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
    return ServeOptions(**raw)


BAKED_MODEL = Path("/opt/model")


def options_from_environment(env: Mapping[str, str]) -> ServeOptions:
    baked = str(BAKED_MODEL) if (BAKED_MODEL / "MLmodel").is_file() else ""
    return ServeOptions(
        model_uri=env.get("MODELYARD_MODEL_URI") or baked,
        host=env.get("MODELYARD_HOST", "0.0.0.0"),
        port=int(env.get("MODELYARD_PORT", "8080")),
        workers=int(env.get("MODELYARD_WORKERS", "2")),
        state_dir=Path(env.get("MODELYARD_STATE_DIR", "/tmp/modelyard")),
        strategy=env.get("MODELYARD_ROLLOUT", "blue-green"),
        poll_seconds=float(env.get("MODELYARD_POLL_SECONDS", "10")),
        sample_rate=float(env.get("MODELYARD_SAMPLE_RATE", "0.1")),
        environment=env.get("MODELYARD_ENVIRONMENT", ""),
        image_digest=env.get("MODELYARD_IMAGE_DIGEST", ""),
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
