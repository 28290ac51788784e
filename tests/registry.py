"""A running registry container, configured exactly as the Registry component configures it
(htpasswd auth with a generated password, a self-signed TLS pair), for the image and pipeline tests."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from modelyard.contracts.environment import load_environment
from modelyard.infra.components import registry
from modelyard.pipelines.local_mlflow import free_port

from tests.docker_helpers import RUN_ID, copy_files, docker, wait_for


def self_signed(*addresses: str) -> tuple[str, str]:
    """What the component's pulumi-tls resources generate: ECDSA P-256, for these addresses."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def registry_status(port: int, context: ssl.SSLContext, auth: str | None = None) -> int:
    """The status of GET /v2/ (401 anonymous or with a wrong password, 200 logged in)."""
    request = urllib.request.Request(f"https://127.0.0.1:{port}/v2/")
    if auth:
        request.add_header("Authorization", f"Basic {b64encode(auth.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@contextmanager
def running_registry(image: str, address: str = "127.0.0.1") -> Iterator[dict[str, Any]]:
    """Start the registry on a free loopback port, and on `address` too (the name images and
    pulls use) when that is another address of this machine; removed with its volume
    afterwards."""
    platform = load_environment("local").platform
    assert platform is not None
    settings = platform.registry
    password = secrets.token_urlsafe(24)
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    certificate, key = self_signed(*dict.fromkeys(("127.0.0.1", address)))
    port = free_port()
    name = volume = f"modelyard-test-registry-{RUN_ID}-{port}"
    docker("volume", "create", volume)
    try:
        config = registry.render_config(settings, secrets.token_urlsafe(32))
        docker(
            "create", "--name", name, "--user", registry.RUN_AS,
            *(flag for host in dict.fromkeys(("127.0.0.1", address))
              for flag in ("-p", f"{host}:{port}:{registry.CONTAINER_PORT}")),
            "-v", f"{volume}:{registry.DATA_DIR}",
            image,
        )  # fmt: skip
        htpasswd = registry.htpasswd_line(settings.username, digest)
        copy_files(name, registry.container_files(settings, htpasswd, certificate, key, config))
        docker("start", name)
        context = ssl.create_default_context(cadata=certificate)
        wait_for(lambda: registry_status(port, context) == 401, 60, "registry", logs_of=name)
        yield {
            "name": name,
            "address": f"{address}:{port}",
            "port": port,
            "username": settings.username,
            "password": password,
            "tls": context,
            "volume": volume,
            "settings": settings,
            "files": (htpasswd, certificate, key),
        }
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
