"""Who an mTLS caller is, once the server also trusts the manifest's CAs.

A federated registry's TLS server takes client certificates from its own CA (its platforms,
carriers and admins) and from every member's CA (peer registries). To TLS every one of those
CAs is a root for every identity, so a member's CA could mint `spiffe://numbind/admin/admin`
and be an admin here. `CallerTrust.identify` keeps each CA to what it may vouch for:

- `spiffe://numbind/registry/<ID>`: only under member <ID>'s CA (`PeerTrust`);
- any other role (platform, carrier, admin): only under this registry's own CA.

The authentication interceptor should ask this instead of reading the URI alone whenever a
federation is installed; with none, the server's only root is its own CA and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from numbind.protocol.manifest import Member, PeerRefused
from numbind.registry.federation.peers import PeerTrust
from numbind.registry.pki import PrincipalId, principal_from_cert_pem

__all__ = ["CallerTrust"]


class CallerTrust:
    """Contract: `identify` returns the caller's PrincipalId only for a certificate that
    verifies under this registry's own CA, or the Member only for a registry identity that
    verifies under that member's CA (never a PrincipalId with role "registry"); anything
    else raises PeerRefused saying which issuer may not vouch for which identity."""

    def __init__(self, own_ca_pem: bytes, peers: PeerTrust | None) -> None:
        self._own_ca = x509.load_pem_x509_certificate(own_ca_pem)
        self._own_store = Store([self._own_ca])
        self._peers = peers

    def identify(self, pem: bytes, now: datetime | None = None) -> PrincipalId | Member:
        try:
            principal = principal_from_cert_pem(pem)
        except ValueError as exc:
            raise PeerRefused(f"caller certificate: {exc}") from None
        if principal.role == "registry":
            if self._peers is None:
                raise PeerRefused(
                    f"caller certificate: {principal.uri} is a registry identity, but this "
                    "registry is in no federation"
                )
            return self._peers.peer_from_pem(pem, now)
        cert = x509.load_pem_x509_certificate(pem)
        verifier = (
            PolicyBuilder()
            .store(self._own_store)
            .time(now or datetime.now(UTC))
            .build_client_verifier()
        )
        try:
            verifier.verify(cert, [])
        except VerificationError as exc:
            raise PeerRefused(
                f"caller certificate: {principal.uri} does not verify under this registry's "
                f"own CA, the only issuer of {principal.role} identities here ({exc})"
            ) from None
        return principal

    def identify_auth_context(
        self, auth_context: Mapping[str, Iterable[bytes]]
    ) -> PrincipalId | Member:
        """From a grpc ServicerContext's `auth_context()` (the verified leaf certificate)."""
        pems = list(auth_context.get("x509_pem_cert", ()))
        if len(pems) != 1:
            raise PeerRefused(f"caller: got {len(pems)} client certificates, want 1")
        return self.identify(pems[0])
