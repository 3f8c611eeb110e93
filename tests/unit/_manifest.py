"""What the manifest tests share: certificate authorities, a token key, and a valid
manifest of N members to sign, open or break."""

from __future__ import annotations

from pathlib import Path

from numbind.protocol import voprf
from numbind.protocol.manifest import Manifest, Member, TokenPublicKey, TokenService
from numbind.registry.pki import CertificateAuthority

T0 = 1_700_000_000


def make_cas(root: Path) -> list[CertificateAuthority]:
    return [CertificateAuthority.create(root / f"ca{i}") for i in range(4)]


def make_token_key() -> TokenPublicKey:
    return TokenPublicKey("00aa11bb22cc33dd", voprf.generate_key_pair()[1])


def member(
    ca: CertificateAuthority, mid: str, port: int, roles: tuple[str, ...] = ("binding-registry",)
) -> Member:
    return Member(mid, mid.upper(), f"127.0.0.1:{port}", ca.cert_pem.decode(), roles)  # type: ignore[arg-type]


def manifest(
    cas: list[CertificateAuthority],
    token_key: TokenPublicKey,
    *,
    federation: str = "demo",
    version: int = 1,
    members: int = 2,
) -> Manifest:
    hub = member(cas[0], "hub", 7443, ("lifecycle-authority", "token-service"))
    others = [member(cas[i], f"m{i}", 7443 + i) for i in range(1, members)]
    return Manifest(
        federation=federation,
        version=version,
        issued_at=T0 + version,
        token_service=TokenService("127.0.0.1:7443", token_key.key_id, (token_key,)),
        members=tuple(sorted([hub, *others], key=lambda m: m.id)),
    )
