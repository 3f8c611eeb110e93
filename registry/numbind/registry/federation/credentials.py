"""This registry's own credentials for federation: its CA, its server name, its peer
certificate (`spiffe://numbind/registry/<id>`, issued under its own CA)."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.manifest import FederationSetupError
from numbind.registry.config import Settings
from numbind.registry.federation.files import FederationDir
from numbind.registry.pki import CA_KEY_FILE, CertificateAuthority, PrincipalId

__all__ = ["ca_fingerprint", "ensure_peer_cert", "load_ca", "server_name_warning"]

# Renew this registry's peer certificate when it would expire sooner than this.
_PEER_CERT_RENEW = timedelta(days=30)


def load_ca(settings: Settings) -> CertificateAuthority:
    if not (settings.pki_dir / CA_KEY_FILE).exists():
        raise FederationSetupError(
            f"no registry CA in {settings.pki_dir}; run `numbind admin init --data-dir "
            f"{settings.data_dir}` first"
        )
    try:
        return CertificateAuthority.load(settings.pki_dir)
    except (OSError, ValueError) as exc:
        raise FederationSetupError(f"registry CA in {settings.pki_dir}: {exc}") from None


def ca_fingerprint(ca: CertificateAuthority) -> str:
    """SHA-256 of the CA certificate (DER), in hex: what operators compare out of band."""
    return hashlib.sha256(ca.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def server_name_warning(settings: Settings, ca: CertificateAuthority, address: str) -> str | None:
    """Peers will dial `address` and check the server certificate against its host."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    path = settings.pki_dir / "server.pem"
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return f"cannot read the server certificate {path}; peers will not reach {address}"
    try:
        PolicyBuilder().store(Store([ca.certificate])).build_server_verifier(subject).verify(
            cert, []
        )
    except VerificationError:
        return (
            f"the server certificate {path} does not name {host}: peers dialling {address} "
            "will refuse it; issue one for that host before serving the federation"
        )
    return None


def ensure_peer_cert(fed: FederationDir, ca: CertificateAuthority, member_id: str) -> None:
    """This registry's peer certificate, spiffe://numbind/registry/<id> under its own CA;
    kept if it is already that and not close to expiry."""
    principal = PrincipalId("registry", member_id)
    try:
        cert = x509.load_pem_x509_certificate(fed.peer_cert_path.read_bytes())
        key = serialization.load_pem_private_key(fed.peer_key_path.read_bytes(), None)
        verified = (
            PolicyBuilder()
            .store(Store([ca.certificate]))
            .time(datetime.now(UTC) + _PEER_CERT_RENEW)
            .build_client_verifier()
            .verify(cert, [])
        )
        same_key = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if same_key and verified.subjects == [x509.UniformResourceIdentifier(principal.uri)]:
            return
    except (OSError, ValueError, TypeError, VerificationError):
        pass
    new_key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = ca.issue_client_cert(principal, new_key.public_key())
    key_pem = new_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fed.write_peer(cert_pem, key_pem)
