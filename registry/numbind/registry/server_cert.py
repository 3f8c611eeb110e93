"""The registry's TLS server certificate and the hosts it names.

A client checks the certificate against the host it dials (a bundle listing several
addresses: the first one's, numbind.sdk.channel), so the certificate must name every host
clients use: the load balancer's name, each process's address. `numbind admin init` keeps it
so (ensure_server_cert): the defaults, the hosts bundles are given, every --server-name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from numbind.protocol.bundle import registry_addresses
from numbind.protocol.files import write_private_file
from numbind.registry.config import WILDCARD_HOSTS
from numbind.registry.pki import (
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    CertificateAuthority,
    server_san,
)

__all__ = [
    "DEFAULT_SERVER_NAMES",
    "ServerCert",
    "address_hosts",
    "ensure_server_cert",
    "load_server_pair",
    "missing_names",
    "server_name",
]

DEFAULT_SERVER_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerCert:
    """What ensure_server_cert did: ``created``, ``kept`` (it named every host asked for)
    or ``re-issued`` (to name ``added`` too); ``names`` are what it names now."""

    action: Literal["created", "kept", "re-issued"]
    names: tuple[str, ...]
    added: tuple[str, ...] = ()


def server_name(text: str) -> str:
    """A host for the server certificate (a DNS name or an IP literal), normalised as the
    certificate carries it; ValueError naming ``text`` otherwise."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1], as in an address
    try:
        san = server_san(host)
    except ValueError:
        san = None
    # An all-digit last label is a mistyped IP address (10.0.0.256), never a DNS name.
    if san is None or (isinstance(san, x509.DNSName) and san.value.rsplit(".", 1)[-1].isdigit()):
        hint = " (give the host without :PORT)" if ":" in host and san is None else ""
        raise ValueError(
            f"server name {text!r}: got neither a DNS name nor an IP address{hint}, want "
            "e.g. registry.example or 10.0.0.1"
        )
    return _text(san)


def address_hosts(address: str) -> list[str]:
    """The hosts of ``host:port[,host:port...]`` a certificate must name for clients that
    dial it; a wildcard listen host (0.0.0.0, ::) is left out."""
    hosts: list[str] = []
    for one in registry_addresses(address):
        host = one.rpartition(":")[0].strip("[]")
        if host not in WILDCARD_HOSTS and host not in hosts:
            hosts.append(host)
    return hosts


def missing_names(pki_dir: Path, hosts: Sequence[str]) -> list[str]:
    """Which of ``hosts`` the server certificate in ``pki_dir`` does not name."""
    named = _named(pki_dir / SERVER_CERT_FILE)
    return [_text(san) for san in _sans(hosts) if san not in named]


def ensure_server_cert(ca: CertificateAuthority, pki_dir: Path, hosts: Sequence[str]) -> ServerCert:
    """A server certificate in ``pki_dir`` naming every one of ``hosts``: issued if there is
    none; re-issued naming what it named and what is missing, keeping its key, if one is
    missing; else left untouched. ValueError for a bad host or an unreadable certificate."""
    wanted = _sans(hosts)
    cert_path, key_path = pki_dir / SERVER_CERT_FILE, pki_dir / SERVER_KEY_FILE
    if not cert_path.exists():
        cert_pem, key_pem = ca.issue_server_cert([_text(san) for san in wanted])
        write_private_file(key_path, key_pem)
        write_private_file(cert_path, cert_pem)
        return ServerCert("created", tuple(_text(san) for san in wanted))
    named = _named(cert_path)
    added = [san for san in wanted if san not in named]
    names = tuple(_text(san) for san in [*named, *added])
    if not added:
        return ServerCert("kept", names)
    key = _key_of(key_path, cert_path)
    cert_pem, key_pem = ca.issue_server_cert(names, key=key)
    # Keeping the key leaves one file to replace, so an interrupted re-issue never leaves
    # a certificate beside the wrong key.
    if key is None:
        write_private_file(key_path, key_pem)
    write_private_file(cert_path, cert_pem)
    return ServerCert("re-issued", names, tuple(_text(san) for san in added))


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for host in hosts:
        san = server_san(server_name(host))
        if san not in sans:
            sans.append(san)
    return sans


def _named(cert_path: Path) -> list[x509.GeneralName]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        key_path = cert_path.parent / SERVER_KEY_FILE
        raise ValueError(
            f"{cert_path}: not a PEM certificate; remove it and {key_path} and run "
            "`numbind admin init` to issue a new pair"
        ) from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n for n in san if isinstance(n, x509.DNSName | x509.IPAddress)]


def _key_of(key_path: Path, cert_path: Path) -> ec.EllipticCurvePrivateKey | None:
    """The server key, if it is readable and the certificate's; None means issue a new one."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return key


def _text(san: x509.GeneralName) -> str:
    if isinstance(san, x509.IPAddress):
        return str(san.value)
    value: str = san.value
    return value


def load_server_pair(pki_dir: Path) -> tuple[bytes, bytes]:
    """The registry's TLS server ``(key_pem, cert_pem)``, checked to parse and to match.

    gRPC reports a bad pair only as a failure to bind the port, so it is checked here, before
    gRPC sees it; ValueError names the bad file."""
    key_path, cert_path = pki_dir / SERVER_KEY_FILE, pki_dir / SERVER_CERT_FILE
    key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    fix = (
        f"remove {key_path} and {cert_path} and run `numbind admin init --data-dir "
        f"{pki_dir.parent}` to issue a new pair"
    )
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError(f"{cert_path}: not a PEM certificate; {fix}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{key_path}: not an unencrypted PEM private key; {fix}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ValueError(f"{key_path}: not the key of the certificate {cert_path}; {fix}")
    return key_pem, cert_pem
