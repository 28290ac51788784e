"""Docker networks, volumes, images and containers as Pulumi resources, over the Docker SDK for
Python (docker-py).

Why not pulumi-docker: its provider plugin is a Go program bridged from Terraform, and the Go
module proxy these machines reach refuses it (and the Terraform SDK fork it needs), so it cannot
be built here (tools/README.md). These four resources are what the platform uses of it, as
Pulumi dynamic resources: the engine plans, diffs, records and destroys them like any other.

What they promise:
- a container is replaced whenever anything about it changes (it is cattle: its data lives in
  volumes); it is deleted before its replacement is created, since its name is fixed;
- files uploaded into a container (secrets included) never land in its outputs: the state keeps
  their digest, the engine keeps the inputs encrypted;
- a create that finds leftovers of an interrupted `up` (a container or network of the same
  name) converges instead of failing: the container is replaced, the network and volume reused,
  so nothing in a volume is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

LABEL = "io.modelyard.managed-by"  # on everything these resources create


def _client(host: str | None) -> Any:
    import docker  # imported where the engine runs the provider, not by every program import

    if not host:
        return docker.from_env()
    # ssh://user@host goes through the ssh client, with the user's keys and known_hosts.
    return docker.DockerClient(base_url=host, use_ssh_client=host.startswith("ssh://"))


def _not_found() -> type[Exception]:
    import docker.errors

    return docker.errors.NotFound


def _read(id_: str, props: dict[str, Any], fetch: Callable[[Any], Any]) -> ReadResult:
    """`pulumi refresh`: gone from the engine means gone from the stack."""
    try:
        fetch(_client(props.get("host")))
    except _not_found():
        return ReadResult("", {})  # an empty id tells the engine it is gone
    return ReadResult(id_, props)


def _remove(props: dict[str, Any], remove: Callable[[Any], Any]) -> None:
    """`pulumi destroy`: what is gone already counts as deleted."""
    with contextlib.suppress(_not_found()):
        remove(_client(props.get("host")))


def _public(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if not k.startswith("__")}


class _Replaced(ResourceProvider):
    """Any change of these inputs replaces the resource (delete first: names are fixed)."""

    compared: tuple[str, ...] = ()

    def fingerprint(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {key: props.get(key) for key in self.compared}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        before, after = olds.get("fingerprint") or {}, self.fingerprint(news)
        changed = sorted(k for k in after if before.get(k) != after[k])
        return DiffResult(
            changes=bool(changed), replaces=changed, delete_before_replace=bool(changed)
        )


class _NetworkProvider(_Replaced):
    compared = ("name", "host")

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client(props.get("host"))
        found = client.networks.list(names=[props["name"]])
        network = (
            found[0]
            if found
            else client.networks.create(props["name"], driver="bridge", labels={LABEL: "modelyard"})
        )
        return CreateResult(network.id, {**_public(props), "fingerprint": self.fingerprint(props)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return _read(id_, props, lambda client: client.networks.get(id_))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        _remove(props, lambda client: client.networks.get(id_).remove())


class _VolumeProvider(_Replaced):
    compared = ("name", "host")

    def create(self, props: dict[str, Any]) -> CreateResult:
        # Creating an existing volume returns it: data survives an interrupted `up`.
        volume = _client(props.get("host")).volumes.create(
            props["name"], labels={LABEL: "modelyard"}
        )
        return CreateResult(volume.name, {**_public(props), "fingerprint": self.fingerprint(props)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return _read(id_, props, lambda client: client.volumes.get(id_))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        _remove(props, lambda client: client.volumes.get(id_).remove(force=True))


class _ImageProvider(_Replaced):
    # The tag carries the context's digest: a changed context is a new image.
    compared = ("image_name", "context", "host")

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client(props.get("host"))
        tail: list[str] = []
        for chunk in client.api.build(
            path=props["context"], tag=props["image_name"], rm=True, decode=True,
            labels={LABEL: "modelyard"},
        ):  # fmt: skip
            if "stream" in chunk:
                tail = [*tail, chunk["stream"]][-20:]
            if "error" in chunk:
                raise RuntimeError(
                    f"docker build of {props['image_name']} failed: {chunk['error'].strip()}\n"
                    + "".join(tail)
                )
        image = client.images.get(props["image_name"])
        outs = {**_public(props), "image_id": image.id, "fingerprint": self.fingerprint(props)}
        return CreateResult(image.id, outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return _read(id_, props, lambda client: client.images.get(props["image_name"]))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        import docker.errors

        # Gone already, or still used by a container outside this stack: leave it.
        with contextlib.suppress(docker.errors.APIError):
            _client(props.get("host")).images.remove(props["image_name"])


def _uploads_digest(uploads: Sequence[Mapping[str, Any]]) -> str:
    """What the state keeps of uploaded files: their digest, never their content."""
    canonical = json.dumps(sorted(uploads, key=lambda u: u["file"]), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _archive(upload: Mapping[str, Any], at: str) -> bytes:
    """A tar of the one file, to be extracted at folder `at`."""
    data = upload["content"].encode()
    info = tarfile.TarInfo(upload["file"].removeprefix(at).lstrip("/"))
    info.size, info.mtime = len(data), int(time.time())
    info.mode = int(upload.get("permissions", "0444"), 8)
    info.uid = info.gid = int(upload.get("owner", "0"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _put(container: Any, upload: Mapping[str, Any]) -> None:
    """Into the file's folder when it exists (a volume takes files while the root filesystem is
    read-only), else from / so Docker makes the folders it lacks."""
    import docker.errors

    folder = upload["file"].rpartition("/")[0] or "/"
    try:
        container.put_archive(folder, _archive(upload, folder))
    except docker.errors.NotFound:
        container.put_archive("/", _archive(upload, "/"))


def _nanoseconds(duration: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return int(float(duration[: -len(suffix)]) * units[suffix])
    return int(duration)


def _await_healthy(container: Any, health: Mapping[str, Any]) -> None:
    """Until the container's own health test passes, run by us every half second (Docker's first
    run waits a whole interval), as long as Docker would wait before calling it unhealthy: an
    `up` that succeeded means the service answers."""
    test = list(health["test"])
    command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    timeout = (_nanoseconds(health["start_period"])
               + _nanoseconds(health["interval"]) * int(health["retries"])) / 1e9  # fmt: skip
    deadline = time.monotonic() + timeout
    output = b""
    while time.monotonic() < deadline:
        container.reload()
        if container.status != "running":
            logs = container.logs(tail=20).decode(errors="replace")
            raise RuntimeError(f"container {container.name} stopped while starting:\n{logs}")
        code, output = container.exec_run(command, demux=False)
        if code == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"container {container.name} not healthy within {timeout:.0f} s (its health test "
        f"{command} said {output.decode(errors='replace').strip()[-300:]!r}): see `docker logs "
        f"{container.name}`; the next `up` starts it again"
    )


class _ContainerProvider(_Replaced):
    compared = (
        "name", "image", "command", "user", "envs", "ports", "volumes", "tmpfs", "read_only",
        "capabilities_drop", "security_opts", "memory_mb", "cpus", "restart", "healthcheck",
        "networks", "labels", "uploads_digest", "host",
    )  # fmt: skip

    def fingerprint(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **super().fingerprint(props),
            "uploads_digest": _uploads_digest(props.get("uploads") or []),
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        import docker.errors
        import docker.types

        client = _client(props.get("host"))
        # Left by an `up` that was killed before it recorded the container.
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(props["name"]).remove(force=True)
        networks = list(props.get("networks") or [])
        health = props.get("healthcheck")
        container = client.containers.create(
            props["image"],
            command=props.get("command"),
            name=props["name"],
            user=props.get("user"),
            environment=list(props.get("envs") or []),
            # Numbers arrive from the engine as floats.
            ports={
                f"{int(p['internal'])}/tcp": (p.get("ip", "127.0.0.1"), int(p["external"]))
                for p in props.get("ports") or []
            },
            volumes={
                v["volume"]: {"bind": v["path"], "mode": "rw"} for v in props.get("volumes") or []
            },
            tmpfs=props.get("tmpfs"),
            read_only=bool(props.get("read_only")),
            cap_drop=props.get("capabilities_drop"),
            security_opt=props.get("security_opts"),
            mem_limit=f"{int(props['memory_mb'])}m" if props.get("memory_mb") else None,
            nano_cpus=int(float(props["cpus"]) * 10**9) if props.get("cpus") else None,
            restart_policy={"Name": props.get("restart", "no")},
            healthcheck=docker.types.Healthcheck(
                test=health["test"],
                interval=_nanoseconds(health["interval"]),
                timeout=_nanoseconds(health["timeout"]),
                retries=int(health["retries"]),
                start_period=_nanoseconds(health["start_period"]),
            )
            if health
            else None,
            labels={**(props.get("labels") or {}), LABEL: "modelyard"},
            network=networks[0] if networks else None,
            detach=True,
        )
        try:
            for upload in props.get("uploads") or []:
                _put(container, upload)
            for network in networks[1:]:
                client.networks.get(network).connect(container)
            container.start()
            if health and props.get("wait_healthy"):
                _await_healthy(container, health)
        except Exception:
            container.remove(force=True)  # transactional: no half-made container is left
            raise
        outs = {
            **{k: v for k, v in _public(props).items() if k != "uploads"},
            "fingerprint": self.fingerprint(props),
        }
        return CreateResult(container.id, outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return _read(id_, props, lambda client: client.containers.get(id_))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        _remove(props, lambda client: client.containers.get(id_).remove(force=True))


class _Named(Resource):
    """A Docker object known by its name alone (networks, volumes)."""

    provider: ClassVar[type[_Replaced]]
    name: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, name: str, host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:  # fmt: skip
        props = {"name": name, "host": host, "fingerprint": None}
        super().__init__(self.provider(), resource_name, props, opts)


class Network(_Named, module="docker", name="Network"):
    provider = _NetworkProvider


class Volume(_Named, module="docker", name="Volume"):
    provider = _VolumeProvider


class Image(Resource, module="docker", name="Image"):
    """Built on the engine from a local context; never pushed."""

    image_name: pulumi.Output[str]
    image_id: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, image_name: str, context: str, host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:  # fmt: skip
        props = {"image_name": image_name, "context": context, "host": host,
                 "image_id": None, "fingerprint": None}  # fmt: skip
        super().__init__(_ImageProvider(), resource_name, props, opts)


class Container(Resource, module="docker", name="Container"):
    """A container, started. `uploads`: files written before it starts ({file, content,
    permissions, owner}); `volumes`: [{volume, path}]; `ports`: [{internal, external, ip}];
    `healthcheck`: {test, interval, timeout, retries, start_period}; `wait_healthy`: create
    returns once that test passes (else fails, removing the container)."""

    name: pulumi.Output[str]

    def __init__(
        self, resource_name: str, props: Mapping[str, pulumi.Input[Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:  # fmt: skip
        super().__init__(_ContainerProvider(), resource_name, {**props, "fingerprint": None}, opts)
