"""Sets what a promotion or rollout writes for a served model into an environment file
(`desiredVersion`, `image`, and while a rollout keeps two versions, `stableVersion`,
`stableImage`, `canaryWeight`): under `modelyard:serving` for training.model, under
`modelyard:models.NAME` for each other model (Environment.release_key). The rest is kept byte for
byte (comments, order, quoting), so the git diff of a promotion is exactly those lines.

The new text is validated by the typed model before it replaces the file, and the replace is
atomic (write a sibling temp file, fsync, rename): a crash leaves the old file or the new one.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.contracts import atomic_file
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.loader import parse_environment
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import faults
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

SERVING = "modelyard:serving"
KEYS = ("desiredVersion", "image", "stableVersion", "stableImage", "canaryWeight")


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments and layout survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _section(document: Any, key: str) -> Any:
    """The mapping at `key`: a top-level config key, or `modelyard:models.NAME`."""
    top, _, name = key.partition(".")
    config = document.get("config") if isinstance(document, CommentedMap) else None
    found = config.get(top) if isinstance(config, CommentedMap) else None
    return found.get(name) if name and isinstance(found, CommentedMap) else found


def read_serving(path: Path, key: str = SERVING) -> dict[str, Any]:
    """The current value of each of KEYS under `key` in the file (None when unset)."""
    return read_serving_text(path.read_text(encoding="utf-8"), key)


def read_serving_text(text: str, key: str = SERVING) -> dict[str, Any]:
    """read_serving of a file's text (as a commit holds it)."""
    section = _section(_yaml().load(text), key) or {}
    return {name: section.get(name) for name in KEYS}


def render(
    path: Path, wanted: Mapping[str, Any], key: str = SERVING
) -> tuple[str, str, list[dict[str, Any]]]:
    """(old text, new text, changed keys) with the keys of `wanted` set under `key` (None:
    removed); nothing written yet."""
    return render_text(path.read_text(encoding="utf-8"), wanted, key, path)


def render_text(
    old: str, wanted: Mapping[str, Any], key: str, path: Path
) -> tuple[str, str, list[dict[str, Any]]]:
    """render of a file's text (`path` names it in messages)."""
    yaml = _yaml()
    document = yaml.load(old)
    serving = _section(document, key)
    if not isinstance(serving, CommentedMap):
        raise ConfigError(f"{path}: no `{key}:` mapping to record the promoted version in.")
    unknown = set(wanted) - set(KEYS)
    assert not unknown, f"not a key promotions write: {unknown}"
    changes = []
    for name, value in wanted.items():
        before = serving.get(name)
        if before == value:
            continue
        changes.append({"key": f"{key}.{name}", "from": before, "to": value})
        if value is None:
            del serving[name]
        elif name in serving:
            serving[name] = value
        else:
            # New keys go first in the section, where a reader of the diff looks.
            serving.insert(min(KEYS.index(name), len(serving)), name, value)
    out = io.StringIO()
    yaml.dump(document, out)
    return old, out.getvalue(), changes


def validate_text(path: Path, text: str) -> None:
    """Parse `text` as the environment file it will become; refuse before writing if it is bad."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / path.name
        probe.write_text(text, encoding="utf-8")
        try:
            parse_environment(probe, path.name)
        except ConfigError as exc:
            raise PipelineError(
                f"{path}: the promoted settings would make the file invalid, so it was not "
                f"changed: {str(exc).replace(str(probe), path.name)}"
            ) from None


def write_atomic(path: Path, text: str) -> None:
    # Killed at "during-file-write": a half-written temp file, the real file untouched.
    atomic_file.write_atomic(path, text, halfway=lambda: faults.hit("during-file-write"))


def remove_stale_temps(path: Path) -> list[Path]:
    """Temp files a killed writer left beside the environment file."""
    stale = atomic_file.temp_files_of(path)
    for temp in stale:
        temp.unlink(missing_ok=True)
    return stale


def set_serving(path: Path, wanted: Mapping[str, Any], key: str = SERVING) -> list[dict[str, Any]]:
    """Write the keys of `wanted` under `key` (no-op when already so); the keys changed."""
    _, new, changes = render(path, wanted, key)
    if changes:
        validate_text(path, new)
        write_atomic(path, new)
    return changes
