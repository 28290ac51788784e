"""The jenkins_agent role ships the pinned Pulumi tools to the agent user: its tasks for them
run here, against this machine (connection local), into a temporary agent home.

A stand-in tool cache laid out as tools/build.sh lays it out checks the copying, env.sh, the
plugin registration, idempotence and the failures; the real cache (`make tools`), where built,
checks that the copied engine is the one `modelyard` deploys with."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from modelyard.infra.pinned_tools import pinned_versions, tools_dir

from tests.helpers import REPO

ANSIBLE = REPO / "ansible"
PINS = pinned_versions()
CLI = f"pulumi-{PINS['PULUMI_VERSION']}"
HOST = f"pulumi-language-python-{PINS['PULUMI_VERSION']}-0123456789"
PLUGIN = f"pulumi-resource-kubernetes-{PINS['PULUMI_KUBERNETES_VERSION']}"
# Stand-in CLI: `plugin install` does what the real one does with --file (copy into PULUMI_HOME)
# and keeps a log of each call.
FAKE_PULUMI = """#!/bin/bash
home=${PULUMI_HOME:-$HOME/.pulumi}
if [[ $1 == plugin && $2 == install ]]; then
  mkdir -p "$home/plugins/resource-$4-v$5" && cp "$7" "$home/plugins/resource-$4-v$5/"
  echo "$*" >>"$home/installs.log"
fi
"""


@dataclass(frozen=True)
class Run:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        return int(re.findall(r"changed=(\d+)", self.output)[-1])


def _env_sh(cache: Path, host: str) -> str:
    """env.sh as tools/build.sh writes it."""
    return (
        "# Written by tools/build.sh: source it to use the pinned Pulumi engine built for modelyard.\n"
        f'export MODELYARD_TOOLS_DIR="{cache}"\n'
        f'export PATH="{cache}/{CLI}/bin:{cache}/{host}/bin:$PATH"\n'
        'export PULUMI_SKIP_UPDATE_CHECK="${PULUMI_SKIP_UPDATE_CHECK:-true}"\n'
        'export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="${PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION:-true}"\n'
    )


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A tool cache with build.sh's layout: stamps, the host linked next to the CLI, env.sh."""
    cache = tmp_path / "controller-tools"
    _executable(cache / CLI / "bin/pulumi", FAKE_PULUMI)
    for name in ("pulumi-language-python", "pulumi-language-python-exec"):
        _executable(cache / HOST / "bin" / name, f"#!/bin/sh\necho {name}\n")
        (cache / CLI / "bin" / name).symlink_to(cache / HOST / "bin" / name)
    _executable(cache / PLUGIN / "bin/pulumi-resource-kubernetes", "#!/bin/sh\necho k8s\n")
    for build in (CLI, HOST, PLUGIN):
        (cache / build / ".stamp").write_text("2026-01-01T00:00:00Z\n")
    (cache / "env.sh").write_text(_env_sh(cache, HOST))
    return cache


def _play(tmp_path: Path, source: Path, home: Path) -> Run:
    """The role's Pulumi tool tasks, as root's play would run them, with this machine as agent."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Ship the Pulumi tools", "hosts": "agent", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "jenkins_agent",
                                                    "tasks_from": "pulumi_tools.yml"}}],
    }]))  # fmt: skip
    user = getpass.getuser()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"agent": {
        # this machine as the agent, and this user as its agent user: no become needed
        "ansible_connection": "local", "ansible_become": False,
        "jenkins_agent_user": user, "jenkins_agent_home": str(home),
        "jenkins_agent_tools_source": str(source),
    }}}}))  # fmt: skip
    run = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inventory), str(playbook)],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
             "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    return Run(run.returncode, run.stdout + run.stderr)


def test_the_agent_gets_the_pinned_tools_env_sh_and_the_plugin_once(
    tmp_path: Path, cache: Path
) -> None:
    home = tmp_path / "agent-home"
    home.mkdir()
    first = _play(tmp_path, cache, home)
    assert first.rc == 0, first.output[-4000:]
    tools = home / ".cache/modelyard/tools"
    assert sorted(p.name for p in tools.iterdir()) == sorted([CLI, HOST, PLUGIN, "env.sh"])
    linked = tools / CLI / "bin/pulumi-language-python"
    # the host the engine looks for next to the CLI: a file of the agent's, not a link back
    assert not linked.is_symlink() and os.access(linked, os.X_OK)
    assert stat.S_IMODE((tools / PLUGIN / "bin/pulumi-resource-kubernetes").stat().st_mode) == 0o755
    # build.sh's env.sh, pointing at the agent's copies
    assert (tools / "env.sh").read_text() == _env_sh(tools, HOST)
    found = subprocess.run(
        ["bash", "-c", f". {tools}/env.sh && command -v pulumi && command -v pulumi-language-python"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout.split()  # fmt: skip
    assert found == [
        str(tools / CLI / "bin/pulumi"),
        str(tools / CLI / "bin/pulumi-language-python"),
    ]
    plugin = f"resource-kubernetes-v{PINS['PULUMI_KUBERNETES_VERSION']}"
    assert (home / ".pulumi/plugins" / plugin / "pulumi-resource-kubernetes").is_file()
    installs = (home / ".pulumi/installs.log").read_text().splitlines()
    assert installs == [
        f"plugin install resource kubernetes {PINS['PULUMI_KUBERNETES_VERSION']} --file "
        f"{tools / PLUGIN / 'bin/pulumi-resource-kubernetes'}"
    ]

    second = _play(tmp_path, cache, home)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.output[-4000:]
    assert len((home / ".pulumi/installs.log").read_text().splitlines()) == 1


def test_without_built_tools_the_role_says_to_run_make_tools(tmp_path: Path) -> None:
    home = tmp_path / "agent-home"
    home.mkdir()
    run = _play(tmp_path, tmp_path / "never-built", home)
    assert run.rc != 0
    message = " ".join(run.output.split())
    assert f"No Pulumi tools in {tmp_path / 'never-built'}" in message
    assert "run `make tools` there first" in message
    assert not (home / ".cache").exists()  # nothing was half-copied


def test_a_partial_build_is_refused(tmp_path: Path, cache: Path) -> None:
    (cache / PLUGIN / ".stamp").unlink()  # an interrupted `make tools`
    home = tmp_path / "agent-home"
    home.mkdir()
    run = _play(tmp_path, cache, home)
    assert run.rc != 0
    message = " ".join(run.output.split())
    assert f"does not hold complete builds of {CLI}, {HOST}, {PLUGIN}" in message
    assert "run `make tools` first" in message
    assert not (home / ".cache").exists()


@pytest.mark.slow
@pytest.mark.engine
def test_the_copied_engine_is_the_one_modelyard_deploys_with(engine: None, tmp_path: Path) -> None:
    """The real `make tools` cache, shipped: the deploy stages' engine lookup finds it there."""
    home = tmp_path / "agent-home"
    home.mkdir()
    try:
        _ship_the_real_tools(tmp_path, home)
    finally:
        shutil.rmtree(home)  # several hundred MB


def _ship_the_real_tools(tmp_path: Path, home: Path) -> None:
    from modelyard.infra import automation

    first = _play(tmp_path, tools_dir(), home)
    assert first.rc == 0, first.output[-4000:]
    agent_tools = home / ".cache/modelyard/tools"
    plugins = subprocess.run(
        ["bash", "-c", f". {agent_tools}/env.sh && pulumi plugin ls"],
        capture_output=True, text=True, timeout=120, check=True,
        env={"PATH": "/usr/bin:/bin", "PULUMI_HOME": str(home / ".pulumi")},
    ).stdout  # fmt: skip
    assert re.search(
        rf"kubernetes\s+resource\s+{re.escape(PINS['PULUMI_KUBERNETES_VERSION'])}", plugins
    )
    saved = os.environ.get("MODELYARD_TOOLS_DIR")
    os.environ["MODELYARD_TOOLS_DIR"] = str(agent_tools)  # what the agent user's default is
    try:
        command = automation.pulumi_command()
    finally:
        os.environ.pop("MODELYARD_TOOLS_DIR")
        if saved is not None:
            os.environ["MODELYARD_TOOLS_DIR"] = saved
    assert str(command.command).startswith(str(agent_tools))
    assert str(command.version) == PINS["PULUMI_VERSION"]
    second = _play(tmp_path, tools_dir(), home)
    assert second.rc == 0 and second.changed == 0, second.output[-4000:]
