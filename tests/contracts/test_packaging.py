"""The kit is imported under one `modelyard` namespace, and Pulumi's host can run its program:
`main: infra/` puts that folder first on sys.path, so no module in it may be named like a
standard-library module (infra/secrets.py once stood in for `secrets` and killed every `up`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

FOLDERS = ("contracts", "infra", "ml", "pipelines")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("folder", FOLDERS)
def test_outside_the_checkout_only_the_modelyard_namespace_imports(
    folder: str, tmp_path: Path
) -> None:
    generic = _python(f"import {folder}", tmp_path)
    assert generic.returncode != 0 and "ModuleNotFoundError" in generic.stderr
    namespaced = _python(f"import modelyard.{folder} as m; print(m.__path__[0])", tmp_path)
    assert namespaced.returncode == 0, namespaced.stderr
    assert Path(namespaced.stdout.strip()) == REPO / folder


def test_no_module_of_the_kit_is_named_like_a_standard_library_module() -> None:
    clashes = [
        str(path.relative_to(REPO))
        for folder in FOLDERS
        for path in (REPO / folder).rglob("*.py")
        if path.stem in sys.stdlib_module_names
        or (path.name == "__init__.py" and path.parent.name in sys.stdlib_module_names)
    ]
    assert clashes == []


# What pulumi-language-python-exec does with `main: infra/`: a fresh interpreter with the program
# folder first on sys.path before anything is imported, then the folder run as __main__ (here
# under the mock runtime, so no engine is needed; tests/infra/test_engine.py runs the real one).
HOST_LIKE = """
import sys
sys.path.insert(0, {infra!r})
from modelyard.infra.render import render_program, _stack_config
from modelyard.contracts.environment import environment_path
import runpy
config, secrets = _stack_config(environment_path({env!r}))
state = render_program({env!r}, lambda: runpy.run_path({infra!r}, run_name="__main__"),
                       config, secrets)
print(len(state.resources))
"""


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_the_program_runs_the_way_pulumis_host_runs_it(env: str, tmp_path: Path) -> None:
    done = _python(HOST_LIKE.format(infra=str(REPO / "infra"), env=env), REPO)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 5
