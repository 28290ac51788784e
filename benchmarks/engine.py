"""The real engine on the `local` stack (issue #15): `up` from nothing (cold: images built with
Docker's layer cache as it stands), `up` again with no change (warm), `preview` with no change,
and `destroy`. A copy of the stack on free ports, under its own name and state, as the tests do.
Needs the tools `make tools` builds and a Docker engine."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _free_port() -> int:
    from modelyard.pipelines.local_mlflow import free_port

    return free_port()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-engine-") as tmp:
        folder = Path(tmp)
        env = f"bench-{uuid.uuid4().hex[:6]}"
        for part in ("infra", ".venv", "tools"):
            (folder / part).symlink_to(REPO / part)
        (folder / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
        (folder / "environments").mkdir()
        document = yaml.safe_load((REPO / "environments" / "Pulumi.local.yaml").read_text())
        config = document["config"]
        mlflow = _free_port()
        config["modelyard:mlflow"]["trackingUri"] = f"http://127.0.0.1:{mlflow}"
        config["modelyard:serving"]["localPort"] = _free_port()
        config["modelyard:platform"]["registry"]["port"] = _free_port()
        config["modelyard:platform"]["mlflow"]["port"] = mlflow
        (folder / "environments" / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump(document))
        variables = {
            **os.environ,
            "PULUMI_BACKEND_URL": (folder / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "modelyard-example",
            "MODELYARD_STATE_DIR": str(folder / "modelyard-state"),
        }

        def timed(operation: str) -> float:
            start = time.perf_counter()
            done = subprocess.run(
                [MODELYARD, "infra", operation, env], cwd=folder, env=variables,
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"infra {operation} failed:\n{done.stderr[-2000:]}")
            return seconds

        try:
            figures = {
                "up from nothing": timed("up"),
                "up, no change": timed("up"),
                "preview, no change": timed("preview"),
            }
        finally:
            figures["destroy"] = timed("destroy")
    print(f"{'local stack, real engine':<28} seconds")
    for name, seconds in figures.items():
        print(f"  {name:<26} {seconds:7.1f}")
    print(
        "(`up from nothing` builds the platform's images; with Docker's layer cache warm, as on a "
        "machine that built them once, it is mostly container start-up)"
    )
