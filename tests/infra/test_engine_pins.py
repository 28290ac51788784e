"""Both sides of the engine are pinned to one another: each Python SDK names the plugin version
the engine loads, and `make tools` builds exactly the versions in tools/versions.env."""

from __future__ import annotations

import importlib.metadata
import json
from importlib import resources

from modelyard.infra.pinned_tools import pinned_versions


def test_the_sdks_ask_for_the_plugins_make_tools_builds() -> None:
    pins = pinned_versions()
    assert importlib.metadata.version("pulumi") == pins["PULUMI_VERSION"]
    assert importlib.metadata.version("pulumi-kubernetes") == pins["PULUMI_KUBERNETES_VERSION"]
    plugin = json.loads(
        resources.files("pulumi_kubernetes").joinpath("pulumi-plugin.json").read_text()
    )
    assert (plugin["name"], plugin["version"]) == ("kubernetes", pins["PULUMI_KUBERNETES_VERSION"])


def test_no_sdk_asks_for_a_plugin_that_cannot_be_built_here() -> None:
    """docker, random and tls are infra/providers' dynamic resources (tools/README.md)."""
    declared = [
        json.loads(dist.locate_file(f).read_text())
        for dist in importlib.metadata.distributions()
        for f in dist.files or []
        if f.name == "pulumi-plugin.json"
    ]
    needed = {d["name"] for d in declared if d.get("resource")}
    assert needed == {"kubernetes"}
