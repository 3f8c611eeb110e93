"""Field rules of federation files: ids, addresses, display names, CA certificates.

Each check returns the value it accepted or raises MalformedManifest as
`<where>: got <value>, want <rule>`; join files and operator commands reuse them with their
own field names.
"""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from numbind.protocol.federation_errors import MalformedManifest

__all__ = [
    "MAX_NAME_CHARS",
    "canonical_pem",
    "check_address",
    "check_ca_pem",
    "check_federation_id",
    "check_member_id",
    "check_name",
    "field_error",
]

MAX_NAME_CHARS = 100
# The principal id rule (numbind.registry.pki, numbind.protocol.bundle).
_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")


def field_error(where: str, got: object, want: str) -> MalformedManifest:
    text = repr(got)
    if len(text) > 80:
        text = text[:77] + "..."
    return MalformedManifest(f"{where}: got {text}, want {want}")


def check_member_id(where: str, value: object) -> str:
    """A member id follows the principal id rule: [a-z0-9][a-z0-9._-]{0,62}."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise field_error(where, value, "an id matching [a-z0-9][a-z0-9._-]{0,62}")
    return value


def check_federation_id(where: str, value: object) -> str:
    """A federation id follows the same rule (it names keys and log origins)."""
    return check_member_id(where, value)


def check_address(where: str, value: object) -> str:
    """HOST:PORT with a DNS name or IP host, port 1-65535; IPv6 hosts as [addr]:port."""
    if not isinstance(value, str) or len(value) > 300:
        raise field_error(where, value, "HOST:PORT")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise field_error(where, value, "HOST:PORT with a port in 1-65535")
    if port != str(int(port)):
        raise field_error(where, value, "a port without leading zeroes")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise field_error(where, value, "[IPv6]:PORT") from None
        return value
    if len(host) > 253 or not _DNS_NAME_RE.fullmatch(host):
        raise field_error(where, value, "HOST:PORT with a DNS name or IPv4 host (IPv6 as [addr])")
    return value


def check_name(where: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_NAME_CHARS
        or _CONTROL.search(value)
    ):
        raise field_error(
            where, value, f"a display name of 1-{MAX_NAME_CHARS} printable characters"
        )
    return value


def check_ca_pem(where: str, pem: str) -> x509.Certificate:
    """Exactly one PEM certificate, in canonical PEM, marked as a CA."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raise field_error(where, pem, "one PEM CA certificate") from None
    if len(certs) != 1:
        raise field_error(where, f"{len(certs)} certificates", "exactly one CA certificate")
    cert = certs[0]
    if cert.public_bytes(serialization.Encoding.PEM).decode("ascii") != pem:
        raise field_error(where, pem, "the certificate in canonical PEM (no extra text)")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise field_error(where, "no BasicConstraints", "a CA certificate") from None
    except ValueError as exc:
        raise field_error(where, str(exc), "a CA certificate with well-formed extensions") from None
    if not constraints.ca:
        raise field_error(where, "BasicConstraints ca=False", "a CA certificate")
    return cert


def canonical_pem(pem: str | bytes) -> str:
    """The canonical PEM of one certificate (what a manifest holds)."""
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(raw)
    except ValueError:
        raise MalformedManifest("ca_pem: not a PEM certificate") from None
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
