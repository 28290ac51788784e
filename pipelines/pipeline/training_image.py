"""A model's training image: infra/images/train plus the requirements its model.yaml declares,
tagged by the context's content so the pipeline builds it once per requirements change."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from modelyard.contracts.digests import tree_digest
from modelyard.contracts.environment import project_root
from modelyard.ml.spec import ModelSpec
from modelyard.pipelines.docker_cli import docker, stream
from modelyard.pipelines.errors import PipelineError

IMAGE_DIR = Path("infra/images/train")
HOST_CA = Path("build-ca/host.crt")  # trusted while building only; not part of the tag


def build_context(dest: Path, spec: ModelSpec) -> Path:
    """Write the `docker build` context of `spec`'s training image to `dest`."""
    from modelyard.ml.serving.image import host_ca_bundle  # the serving package is heavy to import

    shutil.copytree(project_root() / IMAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "model-requirements.txt").write_text(
        f"# {spec.name}: requirements from ml/models/{spec.name}/model.yaml\n"
        + "".join(f"{line}\n" for line in spec.requirements),
        encoding="utf-8",
    )
    bundle = host_ca_bundle()
    if bundle is not None:
        shutil.copy(bundle, dest / HOST_CA)
    return dest


def image_tag(context: Path, spec: ModelSpec) -> str:
    return f"modelyard-train-{spec.name.lower()}:{tree_digest(context, exclude={HOST_CA})[:12]}"


def ensure_image(spec: ModelSpec, say: Callable[[str], None]) -> str:
    """The tag of `spec`'s training image, built first if this engine does not have it."""
    with tempfile.TemporaryDirectory(prefix="modelyard-train-image-") as folder:
        context = build_context(Path(folder) / "context", spec)
        tag = image_tag(context, spec)
        if docker("image", "inspect", tag).returncode == 0:
            return tag
        say(f"building training image {tag} (once per requirements change; takes minutes)")
        code, tail = stream(
            ["build", "-t", tag, str(context)], say, lambda line: line.startswith("Step ")
        )
    if code != 0:
        detail = "\n".join(tail[-8:])
        raise PipelineError(
            f"the training image {tag} did not build; check the requirements in "
            f"ml/models/{spec.name}/model.yaml. docker build said:\n{detail}"
        )
    return tag
