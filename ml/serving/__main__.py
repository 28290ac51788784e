"""`python -m ml.serving OPTIONS.json`: run a server supervisor detached (used by local deploy)."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import orjson

from ml.serving.rollout import Limits
from ml.serving.supervisor import ServeOptions, Supervisor


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


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(message)s")
    Supervisor(options_from_json(Path(argv[0]).read_bytes())).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
