"""Render: run the Pulumi program under the mock runtime and collect the desired state.

Offline, without Pulumi state or credentials: the same `infra/__main__.py` `pulumi up` runs, with
the stack's config taken from the environment file. Every resource comes out with its type,
name, parent and inputs; Kubernetes objects also as manifests. Secrets come out as `[secret]`:
secret config is handed to the program as Pulumi secrets (the file's ciphertext stands in for the
value the engine would decrypt) and every secret input is masked before anything is kept.

`python -m infra.render ENV` prints the state as JSON: `infra diff` runs it inside an old
checkout to render a past revision with that revision's own program.
"""

from __future__ import annotations

import json
import re
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from modelyard.contracts.environment import (
    ConfigError,
    check_cross_section,
    environment_path,
    load_environment,
    project_root,
)
from modelyard.contracts.environment.loader import read_stack_file
from modelyard.contracts.state import state_dir
from modelyard.infra.providers.resource_types import CERTIFICATE, PASSWORD
from pulumi.dynamic.dynamic import PROVIDER_KEY
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.rpc import UNKNOWN, is_rpc_secret
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET = "[secret]"
PROGRAM = Path(__file__).resolve().parent / "__main__.py"
_CHECKOUT = f"{PROGRAM.parents[1]}/"  # where this copy of the program lives
PROJECT = "modelyard"


@dataclass(frozen=True)
class RenderedResource:
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]

    @property
    def is_kubernetes_object(self) -> bool:
        return self.custom and self.type.startswith("kubernetes:")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": self.inputs,
        }


@dataclass
class RenderedState:
    environment: str
    resources: list[RenderedResource] = field(default_factory=list)

    def by_name(self) -> dict[str, RenderedResource]:
        return {r.name: r for r in self.resources}

    def of_type(self, type_: str) -> list[RenderedResource]:
        return [r for r in self.resources if r.type == type_]

    def manifests(self) -> list[dict[str, Any]]:
        return [r.inputs for r in self.resources if r.is_kubernetes_object]

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "resources": [r.as_dict() for r in self.resources]}

    def to_text(self, fmt: str = "yaml") -> str:
        if fmt == "json":
            return json.dumps(self.as_dict(), indent=2, sort_keys=True)
        return yaml.safe_dump(self.as_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderedState:
        return cls(
            environment=data["environment"],
            resources=[
                RenderedResource(
                    r["type"], r["name"], r["parent"], r.get("custom", True), r["inputs"]
                )
                for r in data["resources"]
            ],
        )

    def write_manifests(self, folder: Path) -> list[Path]:
        """One YAML file per Kubernetes object, named after its kind, namespace and name."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for manifest in self.manifests():
            meta = manifest.get("metadata", {})
            parts = [
                manifest.get("kind", "object"),
                meta.get("namespace", ""),
                meta.get("name", ""),
            ]
            stem = re.sub(r"[^a-z0-9.-]+", "-", "-".join(p for p in parts if p).lower())
            path = folder / f"{stem}.yaml"
            path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
            written.append(path)
        return written


def mask(value: Any) -> Any:
    """Inputs as the mock monitor sees them, with every secret replaced by `[secret]`."""
    if is_rpc_secret(value):
        # A secret map keeps its shape (a Secret's stringData stays a valid manifest): key
        # names show, every value is masked.
        inner = value.get("value")
        return _mask_leaves(inner) if isinstance(inner, dict) else SECRET
    if value is UNKNOWN or value == UNKNOWN:
        return "[unknown]"
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format carries every number as a double
    return value


def _portable(value: Any) -> Any:
    """Paths inside the state folder or the checkout (image build contexts) as `<state>/...` or
    `./relative`: the same program renders the same state wherever it is checked out and
    wherever its state lives, so diffs show only real changes."""
    if isinstance(value, str):
        # The state folder (wherever MODELYARD_STATE_DIR puts it), the program's checkout, or
        # the project it runs for.
        roots = ((f"{state_dir().resolve()}/", "<state>/"), (_CHECKOUT, "./"),
                 (f"{project_root()}/", "./"))  # fmt: skip
        for root, shown in roots:
            if value.startswith(root):
                return shown + value[len(root) :]
        return value
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


def _mask_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_leaves(v) for k, v in value.items()}
    return SECRET


def _without_provider(properties: Any) -> Any:
    """A dynamic resource's inputs, less the pickled implementation the engine runs it with."""
    inputs = pulumi_mocks.rpc.deserialize_properties(properties)
    inputs.pop(PROVIDER_KEY, None)
    inputs.pop("fingerprint", None)  # the docker resources' own bookkeeping (docker_engine.py)
    return inputs


class _Mocks(pulumi_mocks.Mocks):
    """Every resource's outputs are its inputs, so names and references resolve as in a deploy."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        # Generated secrets have no inputs to echo: stand-ins, so dependants render.
        if args.typ == PASSWORD:
            outputs.update(result=f"generated-{args.name}", bcrypt_hash="$2b$04$" + "0" * 53)
        elif args.typ == CERTIFICATE:
            outputs.update(
                cert_pem=f"[generated certificate {args.name}]",
                private_key_pem=f"[generated key {args.name}]",
            )
        return f"{args.name}-id", outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping each registration's parent (the mocks alone never see it)."""

    def __init__(self) -> None:
        super().__init__(_Mocks())
        self.recorded: dict[str, RenderedResource] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            parent = self.recorded.get(request.parent)
            self.recorded[response.urn] = RenderedResource(
                type=request.type,
                name=request.name,
                parent=parent.name if parent else None,
                custom=bool(request.custom),
                inputs=_portable(mask(_without_provider(request.object))),
            )
        return response


def render(environment_name: str) -> RenderedState:
    """The desired state of one environment, as `pulumi up --stack ENV` would register it."""
    # Every mistake in the file, as one message, first.
    check_cross_section(load_environment(environment_name))
    config, secret_keys = _stack_config(environment_path(environment_name))
    try:
        return render_program(environment_name, _run_program, config, secret_keys)
    except ValueError as exc:
        # Component arguments are validated before anything is created; name the file.
        raise ConfigError(f"{environment_path(environment_name)}: {exc}") from None


def render_program(
    stack: str,
    program: Callable[[], None],
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> RenderedState:
    """Any Pulumi program function under the mock runtime (tests render single components)."""
    monitor = _RecordingMonitor()
    pulumi_mocks.set_mocks(_Mocks(), project=PROJECT, stack=stack, preview=False, monitor=monitor)
    set_all_config(config or {}, secret_keys or [])
    _sync_await(run_pulumi_func(program))
    resources = sorted(monitor.recorded.values(), key=lambda r: (r.type, r.name))
    return RenderedState(stack, resources)


def _run_program() -> None:
    # As Pulumi's host runs `main: infra/`: the folder itself, first on sys.path, as __main__.
    runpy.run_path(str(PROGRAM.parent), run_name="__main__")


def _stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the engine hands it to a program: JSON for structured values."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in read_stack_file(path).items():
        plain, secret = _unwrap_secure(value)
        config[str(key)] = plain if isinstance(plain, str) else json.dumps(plain)
        if secret:
            secret_keys.append(str(key))
    return config, secret_keys


def _unwrap_secure(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return str(value["secure"]), True
    if isinstance(value, dict):
        pairs = {k: _unwrap_secure(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    if isinstance(value, list):
        items = [_unwrap_secure(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m modelyard.infra.render ENV", file=sys.stderr)
        return 2
    try:
        state = render(argv[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(state.to_text("json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
