"""The policy pack run by the real engine: `modelyard infra preview|up` pass it to the engine,
which stops a change that breaks a mandatory rule before anything is created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modelyard.infra import automation
from pulumi import automation as auto

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.engine]

VIOLATING_PROGRAM = """
from modelyard.infra.providers.docker_engine import Container

# Root, no memory limit, no health check: three mandatory rules of the pack.
Container("careless", {"name": "careless", "image": "debian:bookworm-slim", "user": "root"})
"""


@pytest.fixture
def engine() -> auto.PulumiCommand:
    try:
        return automation.pulumi_command()
    except automation.PulumiCliMissing as exc:
        if os.environ.get("MODELYARD_REQUIRE_PULUMI") == "1":
            pytest.fail(f"MODELYARD_REQUIRE_PULUMI=1 but {exc}")
        pytest.skip(str(exc))


def test_the_engine_refuses_a_change_that_breaks_a_mandatory_policy(
    engine: auto.PulumiCommand, tmp_path: Path
) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: policy-check\nruntime:\n  name: python\n"
        f"  options:\n    virtualenv: {REPO / '.venv'}\n"
    )
    (tmp_path / "__main__.py").write_text(VIOLATING_PROGRAM)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(tmp_path), pulumi_command=engine,
        env_vars={"PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
                  "PULUMI_CONFIG_PASSPHRASE": "policy", **automation.OFFLINE},
    )  # fmt: skip
    (tmp_path / "state").mkdir()
    stack = auto.create_or_select_stack("check", work_dir=str(tmp_path), opts=options)
    with pytest.raises(auto.errors.CommandError) as refused:
        stack.preview(policy_packs=[str(automation.POLICY_PACK)])
    said = str(refused.value)
    assert "mandatory" in said
    for rule in ("container runs as root", "container has no memory limit",
                 "container has no healthcheck"):  # fmt: skip
        assert rule in said
