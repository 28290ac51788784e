"""Passwords and a self-signed TLS certificate generated once by `pulumi up` and kept, encrypted,
in the stack's state: Pulumi dynamic resources over Python's `secrets`, bcrypt and cryptography.

Why not pulumi-random and pulumi-tls: their provider plugins cannot be built here (the Go module
proxy refuses them; tools/README.md). The values are secret outputs: the engine encrypts them
with the stack's secrets provider and never prints them.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

_ALPHABET = string.ascii_letters + string.digits  # no specials: safe in URLs, INI and YAML


class _PasswordProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        import bcrypt

        value = "".join(secrets.choice(_ALPHABET) for _ in range(int(props["length"])))
        hashed = bcrypt.hashpw(value.encode(), bcrypt.gensalt()).decode()
        outs = {"length": props["length"], "result": value, "bcrypt_hash": hashed}
        return CreateResult(uuid.uuid4().hex, outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("length") != news.get("length")
        return DiffResult(changes=changed, replaces=["length"] if changed else [])


class Password(Resource, module="random", name="Password"):
    """`result`: letters and digits; `bcrypt_hash`: its bcrypt hash (for htpasswd)."""

    result: pulumi.Output[str]
    bcrypt_hash: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, length: int, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["result", "bcrypt_hash"])
        super().__init__(
            _PasswordProvider(),
            resource_name,
            {"length": length, "result": None, "bcrypt_hash": None},
            pulumi.ResourceOptions.merge(opts, secret),
        )


class _CertificateProvider(ResourceProvider):
    compared = ("common_name", "organization", "dns_names", "ip_addresses", "validity_days")

    def create(self, props: dict[str, Any]) -> CreateResult:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, props["common_name"]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, props["organization"]),
        ])  # fmt: skip
        now = datetime.now(UTC)
        alternative = [x509.DNSName(n) for n in props["dns_names"]] + [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in props["ip_addresses"]
        ]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=int(props["validity_days"])))
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        outs = {
            **{k: props[k] for k in self.compared},
            "cert_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "private_key_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
        }
        return CreateResult(uuid.uuid4().hex, outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.compared if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed)


class SelfSignedCertificate(Resource, module="tls", name="SelfSignedCertificate"):
    """An ECDSA P-256 key and a server certificate for `dns_names` and `ip_addresses`."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        common_name: str,
        organization: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        validity_days: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "common_name": common_name,
            "organization": organization,
            "dns_names": sorted(dns_names),
            "ip_addresses": sorted(ip_addresses),
            "validity_days": validity_days,
            "cert_pem": None,
            "private_key_pem": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        super().__init__(
            _CertificateProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(opts, secret),
        )
