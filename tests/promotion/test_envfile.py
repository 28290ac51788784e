"""The environment-file writer: only the promoted keys change, validated, atomic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import envfile

REPO = Path(__file__).resolve().parents[2]
PINNED = "registry.example.internal/modelyard-serving:1.4@sha256:" + "a" * 64


def test_round_trip_changes_only_the_promoted_lines(environments: Path) -> None:
    path = environments / "Pulumi.production.yaml"
    before = path.read_text(encoding="utf-8")
    changes = envfile.set_serving(path, {"desiredVersion": 7, "image": PINNED})
    after = path.read_text(encoding="utf-8")
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert removed == []
    assert added == ["    desiredVersion: 7", f"    image: {PINNED}"]
    assert "# Production: takes only what staging serves" in after  # comments survive
    assert [c["key"] for c in changes] == [
        "modelyard:serving.desiredVersion",
        "modelyard:serving.image",
    ]
    served = load_environment("production").serving
    assert (served.desired_version, served.image) == (7, PINNED)
    assert (
        envfile.set_serving(path, {"desiredVersion": 7, "image": PINNED}) == []
        and path.read_text(encoding="utf-8") == after
    )


def test_an_invalid_result_is_refused_and_the_file_untouched(environments: Path) -> None:
    path = environments / "Pulumi.production.yaml"
    before = path.read_text(encoding="utf-8")
    with pytest.raises(PipelineError, match="must be pinned"):
        envfile.set_serving(path, {"desiredVersion": 2, "image": "modelyard-serving:latest"})
    assert path.read_text(encoding="utf-8") == before


def test_a_killed_write_leaves_the_old_file_and_a_temp_that_is_cleaned(
    environments: Path,
) -> None:
    path = environments / "Pulumi.staging.yaml"
    before = path.read_text(encoding="utf-8")
    code = (
        "import sys; from pathlib import Path; from pipelines.promotion import envfile; "
        'envfile.set_serving(Path(sys.argv[1]), {"desiredVersion": 3, "image": None})'
    )
    env = {"MODELYARD_FAULT_AT": "during-file-write", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, env=env, check=False)
    assert done.returncode == -9
    assert path.read_text(encoding="utf-8") == before
    assert [t.name for t in envfile.remove_stale_temps(path)] != []
    assert list(path.parent.glob(".*.tmp")) == []
