"""numbind.registry.federation.peers: a verified peer certificate -> the member it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from numbind.protocol import voprf
from numbind.protocol.manifest import (
    Manifest,
    Member,
    PeerRefused,
    TokenPublicKey,
    TokenService,
)
from numbind.registry.federation import CallerTrust, PeerTrust
from numbind.registry.pki import CertificateAuthority, PrincipalId


@pytest.fixture(scope="module")
def ca_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peer-cas")


@pytest.fixture(scope="module")
def cas(ca_root: Path) -> dict[str, CertificateAuthority]:
    return {n: CertificateAuthority.create(ca_root / n) for n in ("hub", "a", "b", "rogue")}


def _manifest(cas: dict[str, CertificateAuthority], names: tuple[str, ...]) -> Manifest:
    key = TokenPublicKey("00", voprf.generate_key_pair()[1])
    members = [
        Member(
            n,
            n,
            f"127.0.0.1:{7000 + i}",
            cas[n].cert_pem.decode(),
            ("lifecycle-authority",) if n == "hub" else ("binding-registry",),
        )
        for i, n in enumerate(names)
    ]
    return Manifest(
        "demo",
        1,
        0,
        TokenService("127.0.0.1:7000", "00", (key,)),
        tuple(sorted(members, key=lambda m: m.id)),
    )


@pytest.fixture(scope="module")
def trust(cas: dict[str, CertificateAuthority]) -> PeerTrust:
    return PeerTrust(_manifest(cas, ("hub", "a", "b")))


def _cert(ca: CertificateAuthority, role: str, ident: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return ca.issue_client_cert(PrincipalId(role, ident), key.public_key())  # type: ignore[arg-type]


def test_a_members_certificate_maps_to_that_member(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    for name in ("hub", "a", "b"):
        member = trust.peer_from_pem(_cert(cas[name], "registry", name))
        assert member.id == name and member.uri == f"spiffe://numbind/registry/{name}"
    der = x509.load_pem_x509_certificate(_cert(cas["a"], "registry", "a")).public_bytes(
        serialization.Encoding.DER
    )
    assert trust.peer_from_der(der).id == "a"
    pem = _cert(cas["b"], "registry", "b")
    assert trust.peer_from_auth_context({"x509_pem_cert": [pem]}).id == "b"


def test_a_member_ca_cannot_vouch_for_another_member(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    # Member a's CA is a trusted root for the handshake, but it may only name member a.
    for issuer, claimed in (("a", "b"), ("a", "hub"), ("hub", "a")):
        with pytest.raises(PeerRefused, match=f"does not verify under member {claimed}'s CA"):
            trust.peer_from_pem(_cert(cas[issuer], "registry", claimed))


def test_a_ca_outside_the_manifest_is_refused(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    with pytest.raises(PeerRefused, match="does not verify under member a's CA"):
        trust.peer_from_pem(_cert(cas["rogue"], "registry", "a"))


def test_other_identities_are_refused(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    with pytest.raises(PeerRefused, match="platform/a is not a registry identity"):
        trust.peer_from_pem(_cert(cas["a"], "platform", "a"))
    with pytest.raises(PeerRefused, match="registry/c is not a member of federation demo"):
        trust.peer_from_pem(_cert(cas["a"], "registry", "c"))
    with pytest.raises(PeerRefused, match="not a PEM certificate"):
        trust.peer_from_pem(b"nope")
    with pytest.raises(PeerRefused, match="got 0 client certificates"):
        trust.peer_from_auth_context({})


def test_expired_or_not_yet_valid_certificates_are_refused(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    pem = _cert(cas["a"], "registry", "a")
    now = datetime.now(UTC)
    assert trust.peer_from_pem(pem, now=now).id == "a"
    for when in (now + timedelta(days=400), now - timedelta(days=1)):
        with pytest.raises(PeerRefused, match="does not verify under member a's CA"):
            trust.peer_from_pem(pem, now=when)


def test_two_identities_in_one_certificate_are_refused(
    trust: PeerTrust, cas: dict[str, CertificateAuthority], ca_root: Path
) -> None:
    # CertificateAuthority issues one identity per certificate; mint the odd one by hand.
    ca_key = serialization.load_pem_private_key((ca_root / "a" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "two")]))
        .issuer_name(cas["a"].certificate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("spiffe://numbind/registry/a"),
                    x509.UniformResourceIdentifier("spiffe://numbind/registry/b"),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(PeerRefused, match="got 2 spiffe URIs, want exactly 1"):
        trust.peer_from_certificate(cert)


def test_a_removed_member_is_refused_under_the_newer_manifest(
    cas: dict[str, CertificateAuthority],
) -> None:
    pem = _cert(cas["b"], "registry", "b")
    assert PeerTrust(_manifest(cas, ("hub", "a", "b"))).peer_from_pem(pem).id == "b"
    with pytest.raises(PeerRefused, match="registry/b is not a member"):
        PeerTrust(_manifest(cas, ("hub", "a"))).peer_from_pem(pem)


def test_trust_roots_are_the_members_cas(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    roots = x509.load_pem_x509_certificates(trust.root_certificates())
    assert sorted(c.fingerprint(hashes.SHA256()) for c in roots) == sorted(
        cas[n].certificate.fingerprint(hashes.SHA256()) for n in ("hub", "a", "b")
    )
    # The hub's server: its own CA once, plus every other member's.
    server_roots = x509.load_pem_x509_certificates(
        trust.server_root_certificates(cas["hub"].cert_pem)
    )
    assert len(server_roots) == 3
    rogue_roots = x509.load_pem_x509_certificates(
        trust.server_root_certificates(cas["rogue"].cert_pem)
    )
    assert len(rogue_roots) == 4


def test_callers_are_held_to_what_their_ca_may_vouch_for(
    trust: PeerTrust, cas: dict[str, CertificateAuthority]
) -> None:
    callers = CallerTrust(cas["hub"].cert_pem, trust)
    # Local principals come from the registry's own CA only.
    admin = callers.identify(_cert(cas["hub"], "admin", "admin"))
    assert admin == PrincipalId("admin", "admin")
    for issuer in ("a", "rogue"):
        with pytest.raises(PeerRefused, match="admin/admin does not verify under this registry's"):
            callers.identify(_cert(cas[issuer], "admin", "admin"))
    with pytest.raises(PeerRefused, match="platform/p does not verify under this registry's"):
        callers.identify(_cert(cas["b"], "platform", "p"))
    # Registry identities come from that member's CA only, the hub's own CA included.
    assert callers.identify(_cert(cas["a"], "registry", "a")).id == "a"
    assert isinstance(callers.identify(_cert(cas["hub"], "registry", "hub")), Member)
    with pytest.raises(PeerRefused, match="does not verify under member a's CA"):
        callers.identify(_cert(cas["hub"], "registry", "a"))
    with pytest.raises(PeerRefused, match="got 0 client certificates"):
        callers.identify_auth_context({})


def test_without_a_federation_no_registry_identity_counts(
    cas: dict[str, CertificateAuthority],
) -> None:
    callers = CallerTrust(cas["hub"].cert_pem, None)
    assert callers.identify(_cert(cas["hub"], "carrier", "cm")) == PrincipalId("carrier", "cm")
    with pytest.raises(PeerRefused, match="this registry is in no federation"):
        callers.identify(_cert(cas["hub"], "registry", "hub"))
