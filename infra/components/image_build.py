"""Images `pulumi up` builds on the platform's Docker engine.

Each build context is assembled in the state folder (`image-contexts/NAME`) from the image's
folder under infra/images, plus the CA bundle this machine trusts in its `build-ca/` (builders
behind a TLS-intercepting proxy need it, exactly as the tests' builds do; the final images never
carry it). The image is tagged with the digest of that context, so a changed Dockerfile or
source file makes a new tag, and every container running the image is replaced by the next `up`
(a mutable tag such as `:local` would leave them running the old bytes).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pulumi
from modelyard.contracts.digests import tree_digest
from modelyard.contracts.state import image_contexts_dir
from modelyard.infra.providers.docker_engine import Image
from modelyard.ml.serving.image import host_ca_bundle

IMAGES = Path(__file__).resolve().parents[1] / "images"


def copy_image_folder(name: str) -> Callable[[Path], object]:
    """Writes infra/images/NAME to a folder, with the host's CA where the image takes one."""

    def write(dest: Path) -> None:
        shutil.copytree(IMAGES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
        bundle = host_ca_bundle()
        if bundle is not None and (dest / "build-ca").is_dir():
            shutil.copy(bundle, dest / "build-ca" / "host.crt")

    return write


def prepared_context(name: str, write: Callable[[Path], object]) -> tuple[Path, str]:
    """The build context for image NAME in the state folder, and its digest (12 hex)."""
    folder = image_contexts_dir() / name
    fresh = folder.with_name(f".{name}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.parent.mkdir(parents=True, exist_ok=True)
    write(fresh)
    digest = tree_digest(fresh)[:12]
    if folder.is_dir() and tree_digest(folder)[:12] == digest:
        shutil.rmtree(fresh)  # unchanged: keep the folder Docker last built from
    else:
        shutil.rmtree(folder, ignore_errors=True)
        fresh.rename(folder)
    return folder, digest


def local_image(
    resource_name: str,
    repository: str,
    name: str,
    opts: pulumi.ResourceOptions,
    write: Callable[[Path], object] | None = None,
    host: str | None = None,
) -> Image:
    """Build `repository:<context digest>` on the engine at `host` (default: this machine's);
    never pushed: containers on the same engine run it. `write` assembles the context (default:
    infra/images/NAME)."""
    context, digest = prepared_context(name, write or copy_image_folder(name))
    return Image(
        resource_name, image_name=f"{repository}:{digest}", context=str(context), host=host,
        opts=opts,
    )  # fmt: skip
