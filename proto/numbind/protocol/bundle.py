"""A client's credential bundle: one directory holding everything needed to call the registry.

Layout::

    bundle.json       {"registry": "host:port", "principal": "spiffe://numbind/<role>/<id>",
                       "role": "<role>", "id": "<id>"}
                      ("registry" may list several "host:port" separated by commas)
    ca.pem            the registry CA (trust root for the server certificate)
    client.pem        this client's certificate, issued by the registry CA
    client.key        its private key (0600)
    attestation.key   carriers only: hex Ed25519 seed, 32 bytes (0600)
    attestation.pub   carriers only: hex Ed25519 public key
    federation.vkey   in a federation: the federation key to pin (note verifier text)
    manifest.note     in a federation: the signed manifest as issued; the SDK replaces it
                      with any newer one that verifies under federation.vkey (the log's
                      key and its witnesses' keys come from it)

Clients never import numbind.registry internals, so this module parses certificates on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import grpc
import grpc.aio
import nacl.signing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from numbind.protocol.addresses import check_registry_address, registry_addresses
from numbind.protocol.files import write_atomically

__all__ = [
    "ATTESTATION_KEY_FILE",
    "ATTESTATION_PUB_FILE",
    "BUNDLE_JSON",
    "CA_FILE",
    "CERT_FILE",
    "FEDERATION_KEY_FILE",
    "KEY_FILE",
    "MANIFEST_FILE",
    "Bundle",
    "BundleError",
    "Role",
    "check_registry_address",
    "make_client_key_and_csr",
    "registry_addresses",
    "write_federation_trust",
]

Role = Literal["platform", "carrier", "admin"]
_ROLES: tuple[Role, ...] = get_args(Role)
_SPIFFE_PREFIX = "spiffe://numbind/"
_PRINCIPAL_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

BUNDLE_JSON = "bundle.json"
CA_FILE = "ca.pem"
CERT_FILE = "client.pem"
KEY_FILE = "client.key"
ATTESTATION_KEY_FILE = "attestation.key"
ATTESTATION_PUB_FILE = "attestation.pub"
FEDERATION_KEY_FILE = "federation.vkey"
MANIFEST_FILE = "manifest.note"


class BundleError(Exception):
    """A bundle directory is missing a file or holds a bad one; the message names it."""


def _read(directory: Path, name: str) -> bytes:
    path = directory / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {directory}: missing {name}") from None
    except OSError as exc:
        raise BundleError(f"bundle {directory}: cannot read {name}: {exc}") from None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_principal_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _parse_seed(text: bytes, name: str) -> bytes:
    try:
        seed = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{name}: not a hex string") from None
    if len(seed) != 32:
        raise BundleError(f"{name}: Ed25519 seed must be 32 bytes, got {len(seed)}")
    return seed


@dataclass(frozen=True)
class Bundle:
    """A loaded, checked credential bundle. Secrets are kept out of ``repr``."""

    directory: Path
    registry: str
    role: Role
    principal_id: str
    ca_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    attestation_seed: bytes | None = field(default=None, repr=False)

    @property
    def principal_uri(self) -> str:
        """``spiffe://numbind/<role>/<id>``, as carried in the client certificate."""
        return f"{_SPIFFE_PREFIX}{self.role}/{self.principal_id}"

    @classmethod
    def load(cls, directory: Path | str) -> Bundle:
        """Read and cross-check a bundle directory; raise BundleError naming any bad file."""
        directory = Path(directory)
        if not directory.is_dir():
            raise BundleError(f"bundle directory {directory} does not exist")

        raw_meta = _read(directory, BUNDLE_JSON)
        try:
            meta = json.loads(raw_meta)
        except ValueError as exc:
            raise BundleError(f"bundle {directory}: {BUNDLE_JSON} is not JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise BundleError(f"bundle {directory}: {BUNDLE_JSON} must hold a JSON object")
        fields: dict[str, str] = {}
        for name in ("registry", "principal", "role", "id"):
            value = meta.get(name)
            if not isinstance(value, str) or not value:
                raise BundleError(f"bundle {directory}: {BUNDLE_JSON} lacks string field {name!r}")
            fields[name] = value
        role, principal_id = fields["role"], fields["id"]
        if role not in _ROLES:
            raise BundleError(f"bundle {directory}: {BUNDLE_JSON} has unknown role {role!r}")
        if not _PRINCIPAL_ID_RE.fullmatch(principal_id):
            raise BundleError(f"bundle {directory}: {BUNDLE_JSON} has invalid id {principal_id!r}")
        expected_uri = f"{_SPIFFE_PREFIX}{role}/{principal_id}"
        if fields["principal"] != expected_uri:
            raise BundleError(
                f"bundle {directory}: {BUNDLE_JSON} principal {fields['principal']!r} "
                f"does not match role/id ({expected_uri!r})"
            )
        try:
            check_registry_address(fields["registry"])
        except ValueError as exc:
            raise BundleError(f"bundle {directory}: {BUNDLE_JSON}: {exc}") from None

        ca_pem = _read(directory, CA_FILE)
        cert_pem = _read(directory, CERT_FILE)
        key_pem = _read(directory, KEY_FILE)
        try:
            x509.load_pem_x509_certificates(ca_pem)
        except ValueError as exc:
            raise BundleError(
                f"bundle {directory}: {CA_FILE} is not PEM certificates: {exc}"
            ) from None
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise BundleError(
                f"bundle {directory}: {CERT_FILE} is not a PEM certificate: {exc}"
            ) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise BundleError(
                f"bundle {directory}: {KEY_FILE} is not an unencrypted PEM private key: {exc}"
            ) from None
        # Catch mixed-up files here rather than as an opaque TLS handshake failure later.
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise BundleError(f"bundle {directory}: {KEY_FILE} does not match {CERT_FILE}")
        if _cert_principal_uris(cert) != [expected_uri]:
            raise BundleError(
                f"bundle {directory}: {CERT_FILE} is not issued to {expected_uri} "
                f"(its URIs: {_cert_principal_uris(cert)})"
            )

        seed: bytes | None = None
        has_attestation = (directory / ATTESTATION_KEY_FILE).exists()
        if role == "carrier":
            seed = _parse_seed(_read(directory, ATTESTATION_KEY_FILE), ATTESTATION_KEY_FILE)
            pub_text = _read(directory, ATTESTATION_PUB_FILE).decode("ascii", "replace").strip()
            derived = nacl.signing.SigningKey(seed).verify_key.encode().hex()
            if pub_text.lower() != derived:
                raise BundleError(
                    f"bundle {directory}: {ATTESTATION_PUB_FILE} does not match "
                    f"{ATTESTATION_KEY_FILE}"
                )
        elif has_attestation:
            raise BundleError(
                f"bundle {directory}: {ATTESTATION_KEY_FILE} present but role is {role!r}; "
                "only carrier bundles hold attestation keys"
            )

        return cls(
            directory=directory,
            registry=fields["registry"],
            role=role,
            principal_id=principal_id,
            ca_pem=ca_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
            attestation_seed=seed,
        )

    @classmethod
    def write(
        cls,
        directory: Path | str,
        *,
        registry: str,
        role: Role,
        principal_id: str,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        attestation_seed: bytes | None = None,
    ) -> Bundle:
        """Write a bundle directory (replacing files atomically) and return it, re-loaded."""
        directory = Path(directory)
        if role not in _ROLES:
            raise BundleError(f"unknown role {role!r}")
        if role == "carrier" and attestation_seed is None:
            raise BundleError("a carrier bundle needs an attestation_seed")
        if role != "carrier" and attestation_seed is not None:
            raise BundleError(f"only carrier bundles hold attestation keys, not {role!r}")
        if attestation_seed is not None and len(attestation_seed) != 32:
            raise BundleError(f"attestation_seed must be 32 bytes, got {len(attestation_seed)}")
        try:
            check_registry_address(registry)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        if not _PRINCIPAL_ID_RE.fullmatch(principal_id):
            raise BundleError(f"invalid principal id {principal_id!r}")

        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        meta = {
            "registry": registry,
            "principal": f"{_SPIFFE_PREFIX}{role}/{principal_id}",
            "role": role,
            "id": principal_id,
        }
        # Every file private, public halves too: a bundle is a credential directory, and
        # the admin's lives in the registry's data dir, which refuses anything readable
        # by others (numbind.registry.datadir).
        write_atomically(directory / CA_FILE, ca_pem, 0o600)
        write_atomically(directory / CERT_FILE, cert_pem, 0o600)
        write_atomically(directory / KEY_FILE, key_pem, 0o600)
        if attestation_seed is None:
            # Re-using a directory that once held a carrier bundle must not leave its key behind.
            for stale in (ATTESTATION_KEY_FILE, ATTESTATION_PUB_FILE):
                (directory / stale).unlink(missing_ok=True)
        else:
            verify_key = nacl.signing.SigningKey(attestation_seed).verify_key.encode()
            write_atomically(
                directory / ATTESTATION_KEY_FILE, (attestation_seed.hex() + "\n").encode(), 0o600
            )
            write_atomically(
                directory / ATTESTATION_PUB_FILE, (verify_key.hex() + "\n").encode(), 0o600
            )
        # bundle.json last: its presence marks a complete bundle.
        write_atomically(
            directory / BUNDLE_JSON, (json.dumps(meta, indent=2) + "\n").encode(), 0o600
        )
        return cls.load(directory)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """mTLS credentials: trust the registry CA, present this bundle's client certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )

    def attestation_signing_key(self) -> nacl.signing.SigningKey:
        """The carrier's Ed25519 attestation key; BundleError for non-carrier bundles."""
        if self.attestation_seed is None:
            raise BundleError(
                f"bundle {self.directory} ({self.role}) has no attestation key; "
                "only carrier bundles do"
            )
        return nacl.signing.SigningKey(self.attestation_seed)


def write_federation_trust(directory: Path, federation_key: str, manifest: bytes) -> None:
    """Put a federation's pinned key and its signed manifest in a bundle directory: what a
    client needs to trust the federation's log (its key and witnesses) without trusting
    whatever a registry names. The manifest is written last."""
    write_atomically(Path(directory) / FEDERATION_KEY_FILE, (federation_key + "\n").encode(), 0o600)
    write_atomically(Path(directory) / MANIFEST_FILE, manifest, 0o600)


def make_client_key_and_csr(common_name: str) -> tuple[bytes, bytes]:
    """Generate a P-256 key and a CSR for it; returns ``(key_pem, csr_pem)``.

    The registry decides the certificate's identity, so the CSR only names ``common_name``
    for the operator's benefit.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)
