"""The one-layer OCI archives the local cluster's nodes import into containerd (kubeadm's images, the
pause image among them): what containerd reads from them."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from modelyard.infra.local_cluster.oci_archive import oci_archive


def test_an_archive_holds_its_programs_entrypoint_user_and_name(tmp_path: Path) -> None:
    program = tmp_path / "etcd"
    program.write_bytes(b"\x7fELF not really")
    archive = oci_archive({"usr/local/bin/etcd": program}, ["/usr/local/bin/etcd"],
                          "modelyard.invalid/etcd:3.6.16-0", user="65535:65535")  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        blobs = {m.name: outer.extractfile(m).read() for m in outer.getmembers()}  # type: ignore[union-attr]
    index = json.loads(blobs["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "modelyard.invalid/etcd:3.6.16-0"
    manifest = json.loads(blobs[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(blobs[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/etcd"]
    assert config["config"]["User"] == "65535:65535"
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in config["config"]["Env"]
    [layer] = manifest["layers"]
    content = blobs[f"blobs/sha256/{layer['digest'].split(':')[1]}"]
    assert f"sha256:{hashlib.sha256(content).hexdigest()}" == config["rootfs"]["diff_ids"][0]
    with tarfile.open(fileobj=io.BytesIO(content)) as inner:
        members = {m.name: m for m in inner.getmembers()}
    assert [n for n in members if members[n].isdir()] == ["usr", "usr/local", "usr/local/bin"]
    assert members["usr/local/bin/etcd"].mode == 0o755
