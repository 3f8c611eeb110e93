"""Peer registries over mTLS: which CAs to trust, and who a verified peer certificate is.

A member's registry identity is `spiffe://numbind/registry/<ID>`, and it counts only in a
certificate that chains to the CA the installed manifest names for <ID>. The TLS layer is
given every member's CA as an extra root (so a certificate from a CA outside the manifest
fails the handshake), but a root is a root to TLS: a certificate from member A's CA that
claims to be member B would pass the handshake. `PeerTrust.peer_from_*` closes that gap by
verifying the certificate again against THAT member's CA alone.

grpc hands the servicer only the leaf certificate (``x509_pem_cert``), so chains are the
leaf plus the member's CA; numbind CAs issue leaves directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.manifest import (
    REGISTRY_SPIFFE_PREFIX,
    FederationSetupError,
    Manifest,
    Member,
    PeerRefused,
)
from numbind.registry.federation.files import FederationDir, Installed

__all__ = ["PeerTrust", "peer_channel_credentials"]


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


class PeerTrust:
    """What one installed manifest says about peer registries.

    Contract: `peer_from_*` returns a member only for a certificate that (1) carries
    exactly one spiffe URI, `spiffe://numbind/registry/<ID>`, (2) names a member of this
    manifest, and (3) verifies as a client certificate under that member's CA, valid now;
    anything else raises PeerRefused naming which of the three failed.
    """

    def __init__(self, manifest: Manifest) -> None:
        self._manifest = manifest
        self._stores = {m.id: Store([m.ca_certificate]) for m in manifest.members}

    @classmethod
    def load(cls, data_dir: Path) -> PeerTrust | None:
        """From the manifest installed in `data_dir`; None when there is no federation."""
        installed = FederationDir(data_dir).load()
        return None if installed is None else cls(installed.manifest)

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def root_certificates(self) -> bytes:
        """Every member's CA certificate, PEM, in member order: the extra trust roots."""
        return b"".join(m.ca_pem.encode("ascii") for m in self._manifest.members)

    def server_root_certificates(self, own_ca_pem: bytes) -> bytes:
        """The client roots of a registry's TLS server: its own CA (its platforms, carriers
        and admins) plus the members' CAs, each certificate once."""
        seen: set[bytes] = set()
        out = bytearray()
        for cert in x509.load_pem_x509_certificates(own_ca_pem) + [
            m.ca_certificate for m in self._manifest.members
        ]:
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                out += cert.public_bytes(serialization.Encoding.PEM)
        return bytes(out)

    def peer_from_pem(self, pem: bytes, now: datetime | None = None) -> Member:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise PeerRefused("peer certificate: not a PEM certificate") from None
        return self.peer_from_certificate(cert, now)

    def peer_from_der(self, der: bytes, now: datetime | None = None) -> Member:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise PeerRefused("peer certificate: not a DER certificate") from None
        return self.peer_from_certificate(cert, now)

    def peer_from_auth_context(self, auth_context: Mapping[str, Iterable[bytes]]) -> Member:
        """From a grpc ServicerContext's `auth_context()` (the verified leaf certificate)."""
        pems = list(auth_context.get("x509_pem_cert", ()))
        if len(pems) != 1:
            raise PeerRefused(f"peer: got {len(pems)} client certificates, want 1")
        return self.peer_from_pem(pems[0])

    def peer_from_certificate(self, cert: x509.Certificate, now: datetime | None = None) -> Member:
        spiffe = [u for u in _uris(cert) if u.lower().startswith("spiffe:")]
        if len(spiffe) != 1:
            raise PeerRefused(f"peer certificate: got {len(spiffe)} spiffe URIs, want exactly 1")
        uri = spiffe[0]
        if not uri.startswith(REGISTRY_SPIFFE_PREFIX):
            raise PeerRefused(f"peer certificate: {uri[:120]} is not a registry identity")
        member_id = uri[len(REGISTRY_SPIFFE_PREFIX) :]
        member = self._manifest.member(member_id)
        if member is None:
            raise PeerRefused(
                f"peer certificate: {uri[:120]} is not a member of federation "
                f"{self._manifest.federation} (manifest v{self._manifest.version})"
            )
        # Built per call: a verifier freezes "now" when it is built, and a long-running
        # server must not keep accepting a certificate after it expires.
        verifier = (
            PolicyBuilder()
            .store(self._stores[member.id])
            .time(now or datetime.now(UTC))
            .build_client_verifier()
        )
        try:
            verifier.verify(cert, [])
        except VerificationError as exc:
            raise PeerRefused(
                f"peer certificate: {uri} does not verify under member {member.id}'s CA ({exc})"
            ) from None
        return member


def peer_channel_credentials(
    installed: Installed, fed_dir: FederationDir
) -> grpc.ChannelCredentials:
    """mTLS credentials for calling a peer: trust the manifest's CAs, present this
    registry's own peer certificate."""
    try:
        cert_pem = fed_dir.peer_cert_path.read_bytes()
        key_pem = fed_dir.peer_key_path.read_bytes()
    except OSError as exc:
        raise FederationSetupError(
            f"this registry's peer certificate is missing ({exc.filename}); accept the grant again"
        ) from None
    return grpc.ssl_channel_credentials(
        root_certificates=PeerTrust(installed.manifest).root_certificates(),
        private_key=key_pem,
        certificate_chain=cert_pem,
    )
