"""The registry's certificate authority and the principal identities its certificates carry.

Every caller authenticates with an mTLS client certificate issued here. The certificate's only
identity is a single SPIFFE-style URI SAN, ``spiffe://numbind/<role>/<id>``; the subject CN is
informational. Chain verification is the TLS layer's job; the helpers here that read a principal
out of a certificate assume the certificate was already verified against this CA.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from numbind.protocol.files import write_atomically, write_private_file

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "SPIFFE_PREFIX",
    "CertificateAuthority",
    "PrincipalId",
    "Role",
    "principal_from_cert_der",
    "principal_from_cert_pem",
    "server_san",
]

# "registry": a federation peer (numbind.registry.federation.peers maps it to a member).
Role = Literal["platform", "carrier", "admin", "registry"]
ROLES: tuple[Role, ...] = get_args(Role)

SPIFFE_PREFIX = "spiffe://numbind/"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"

_PRINCIPAL_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# A hostname for a server SAN: dot-separated LDH labels, optionally a leading wildcard label.
_DNS_NAME_RE = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

_CA_VALIDITY = timedelta(days=3652)
_SERVER_VALIDITY = timedelta(days=730)
_CLIENT_VALIDITY = timedelta(days=365)
# Backdate notBefore so a peer whose clock runs a little behind ours still accepts fresh certs.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class PrincipalId:
    """A caller's identity: its role and its id within that role."""

    role: Role
    id: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown principal role {self.role!r}; expected one of {ROLES}")
        if not isinstance(self.id, str) or not _PRINCIPAL_ID_RE.fullmatch(self.id):
            raise ValueError(
                f"invalid principal id {self.id!r}: must match [a-z0-9][a-z0-9._-]{{0,62}}"
            )

    @property
    def uri(self) -> str:
        """The SPIFFE URI carried as the certificate's URI SAN."""
        return f"{SPIFFE_PREFIX}{self.role}/{self.id}"

    @classmethod
    def from_uri(cls, uri: str) -> PrincipalId:
        """Parse ``spiffe://numbind/<role>/<id>``; raise ValueError for anything else."""
        if not isinstance(uri, str):
            raise ValueError(f"principal URI must be a string, got {type(uri).__name__}")
        if not uri.startswith(SPIFFE_PREFIX):
            raise ValueError(f"principal URI {uri!r} does not start with {SPIFFE_PREFIX!r}")
        parts = uri[len(SPIFFE_PREFIX) :].split("/")
        if len(parts) != 2:
            raise ValueError(f"principal URI {uri!r} is not of the form {SPIFFE_PREFIX}<role>/<id>")
        role, principal_id = parts
        if role not in ROLES:
            raise ValueError(f"principal URI {uri!r} has unknown role {role!r}")
        try:
            return cls(role=role, id=principal_id)
        except ValueError as exc:
            raise ValueError(f"principal URI {uri!r}: {exc}") from None

    def __str__(self) -> str:
        return self.uri


def _now() -> datetime:
    return datetime.now(UTC)


def _check_subject_key(public_key: CertificatePublicKeyTypes) -> None:
    # Only keys every TLS stack we talk to (BoringSSL in grpc) accepts for client auth.
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise ValueError(f"unsupported EC curve {public_key.curve.name}; use P-256 or P-384")
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise ValueError(f"RSA key of {public_key.key_size} bits is too small; need >= 2048")
        return
    raise ValueError(f"unsupported public key type {type(public_key).__name__}; use EC P-256")


def server_san(host: str) -> x509.GeneralName:
    """The SAN naming ``host`` (an IP literal or a DNS name) in a server certificate. An IPv6
    zone (``fe80::1%eth0``) is dropped and a DNS name's root dot (``registry.example.``)
    too: a certificate carries neither, so a name kept with one never matched the
    certificate issued for it (re-issued on every init, a warning no init could quiet)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        pass
    host = host.removesuffix(".")
    if not _DNS_NAME_RE.fullmatch(host) or len(host) > 253:
        raise ValueError(f"server host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host.lower())


class CertificateAuthority:
    """The registry CA: a P-256 key and its self-signed certificate, stored in one directory."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey):
        own_public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        cert_public = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if own_public != cert_public:
            raise ValueError("CA private key does not match the CA certificate")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            raise ValueError("CA certificate has no BasicConstraints extension") from None
        if not constraints.value.ca:
            raise ValueError("CA certificate is not marked as a CA (BasicConstraints ca=False)")
        self._cert = certificate
        self._key = private_key

    @classmethod
    def create(
        cls, directory: Path, common_name: str = "numbind registry CA"
    ) -> CertificateAuthority:
        """Make a new CA in ``directory`` (``ca.pem``, ``ca.key``); never overwrites a CA key."""
        directory = Path(directory)
        key_path = directory / CA_KEY_FILE
        # Replacing a CA key silently would orphan every certificate already issued.
        if key_path.exists():
            raise FileExistsError(f"{key_path} already exists; refusing to overwrite a CA key")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(cert, key)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(key_path, key_pem)
        # Public, but it lives in the data dir, where every file is private.
        write_atomically(directory / CA_CERT_FILE, ca.cert_pem, 0o600)
        return ca

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Load a CA written by :meth:`create`; ValueError/FileNotFoundError name the bad file."""
        directory = Path(directory)
        cert_path = directory / CA_CERT_FILE
        key_path = directory / CA_KEY_FILE
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{cert_path}: not a PEM certificate ({exc})") from None
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: CA key must be an EC key, got {type(key).__name__}")
        return cls(cert, key)

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return self._cert

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM-encoded (the trust root clients and the server use)."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def _leaf_builder(
        self,
        subject_cn: str,
        public_key: CertificatePublicKeyTypes,
        validity: timedelta,
        sans: Sequence[x509.GeneralName],
        eku: x509.ObjectIdentifier,
    ) -> x509.CertificateBuilder:
        now = _now()
        # A leaf must not outlive its issuer; verifiers would reject it after the CA expires.
        not_after = min(now + validity, self._cert.not_valid_after_utc)
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA keys in TLS 1.2 RSA key exchange need keyEncipherment; harmless for EC.
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )

    def issue_server_cert(
        self,
        hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[bytes, bytes]:
        """Issue the registry's TLS server certificate; returns ``(cert_pem, key_pem)``.
        ``key`` (default: a new P-256 key) lets a re-issue keep the key on disk."""
        if isinstance(hosts, str):
            raise TypeError("hosts must be a sequence of host names, not a single string")
        sans: list[x509.GeneralName] = []
        for host in hosts:
            san = server_san(host)
            if san not in sans:
                sans.append(san)
        if not sans:
            raise ValueError("a server certificate needs at least one host")
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
        cert = self._leaf_builder(
            "numbind registry",
            key.public_key(),
            _SERVER_VALIDITY,
            sans,
            ExtendedKeyUsageOID.SERVER_AUTH,
        ).sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def issue_client_cert(
        self, principal: PrincipalId, public_key: CertificatePublicKeyTypes
    ) -> bytes:
        """Issue a client certificate (PEM) whose only identity is ``principal.uri``."""
        _check_subject_key(public_key)
        cert = self._leaf_builder(
            principal.id,
            public_key,
            _CLIENT_VALIDITY,
            [x509.UniformResourceIdentifier(principal.uri)],
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ).sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)

    def sign_csr(self, csr_pem: bytes, principal: PrincipalId) -> bytes:
        """Issue a client certificate for a CSR's key, for ``principal``.

        Only the CSR's public key is used (after checking the CSR's self-signature proves the
        requester holds the private key); its subject and any SANs it asks for are ignored,
        because the identity is the registry's decision, not the requester's.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate signing request: {exc}") from None
        if not csr.is_signature_valid:
            raise ValueError("CSR signature is invalid (the request was altered or forged)")
        return self.issue_client_cert(principal, csr.public_key())


def principal_from_cert_der(der: bytes) -> PrincipalId:
    """Read the principal from a (TLS-verified) certificate's single spiffe:// URI SAN."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ValueError(f"not a DER certificate: {exc}") from None
    return _principal_from_cert(cert)


def principal_from_cert_pem(pem: bytes) -> PrincipalId:
    """Like :func:`principal_from_cert_der`, for PEM (e.g. grpc's ``x509_pem_cert`` auth key)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    return _principal_from_cert(cert)


@functools.lru_cache(maxsize=4096)
def certificate_identity(pem: bytes) -> tuple[PrincipalId, bytes]:
    """The principal of a (TLS-verified) PEM certificate and the SHA-256 of its DER, which
    the registry pins per principal. Cached: every call presents the same few certificates.
    ValueError for a certificate without exactly one numbind identity."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    return _principal_from_cert(cert), cert.fingerprint(hashes.SHA256())


def certificate_sha256(pem: bytes) -> bytes:
    """SHA-256 of a PEM certificate's DER: what a principal's pin holds."""
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())


def _principal_from_cert(cert: x509.Certificate) -> PrincipalId:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("certificate has no subjectAltName, so no principal URI") from None
    # Any spiffe URI counts, whatever its trust domain: two identities in one cert is ambiguous,
    # and a foreign trust domain is then rejected by from_uri.
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    spiffe = [u for u in uris if u.lower().startswith("spiffe:")]
    if not spiffe:
        raise ValueError("certificate carries no spiffe://numbind/ principal URI")
    if len(spiffe) > 1:
        raise ValueError(f"certificate carries {len(spiffe)} spiffe URIs, expected exactly one")
    return PrincipalId.from_uri(spiffe[0])
