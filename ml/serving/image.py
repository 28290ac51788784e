"""The serving image's build context: infra/images/serving plus the server's own code and,
optionally, a model baked in (what the packaging step pushes to the registry)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from modelyard.contracts.environment import project_root
from modelyard.ml.serving.model import IDENTITY_FILE

IMAGE_DIR = Path("infra/images/serving")
# The server's code and nothing else: no training code, no pandas-based modules.
APP_FILES = ("ml/__init__.py", "ml/errors.py", "ml/monitoring/__init__.py",
             "ml/monitoring/sampling.py", "ml/monitoring/drift.py", "ml/monitoring/bins.py",
             "ml/prediction_kind.py", "contracts/tasks.py",
             "contracts/__init__.py", "contracts/atomic_file.py", "contracts/tags.py",
             "contracts/variables.py")  # fmt: skip


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine trusts (a TLS-intercepting proxy's CA lives there)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build_context(
    dest: Path, model_dir: Path | None = None, identity: dict[str, str] | None = None
) -> Path:
    """Write a complete `docker build` context to `dest`; `identity` (name, version, run_id)
    is what /version reports for a baked model."""
    root = project_root()
    shutil.copytree(root / IMAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    app = dest / "app" / "modelyard"  # the image's PYTHONPATH holds the `modelyard` namespace
    shutil.copytree(root / "ml/serving", app / "ml/serving",
                    ignore=shutil.ignore_patterns("__pycache__", "image.py"))  # fmt: skip
    for name in APP_FILES:
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, app / name)
    if model_dir is not None:
        shutil.copytree(model_dir, dest / "model", dirs_exist_ok=True)
        if identity:
            (dest / "model" / IDENTITY_FILE).write_text(json.dumps(identity), encoding="utf-8")
    bundle = host_ca_bundle()
    if bundle is not None:
        shutil.copy(bundle, dest / "build-ca" / "host.crt")
    return dest
