"""numbind.protocol.manifest: the signed federation manifest and its acceptance rule.

Malformed manifests under a valid signature: test_manifest_malformed.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import note
from numbind.protocol.manifest import (
    FORMAT_LINE,
    MAX_MANIFEST_BYTES,
    FederationError,
    ForkedManifest,
    MalformedManifest,
    Manifest,
    ManifestHolder,
    ManifestSignatureError,
    Member,
    StaleManifest,
    TokenPublicKey,
    TokenService,
    WrongFederation,
    accept_manifest,
    generate_federation_key,
    open_manifest,
    parse_federation_key,
    sign_manifest,
)
from numbind.registry.pki import CertificateAuthority

from tests.unit._manifest import T0, make_cas, make_token_key, manifest


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    return make_cas(tmp_path_factory.mktemp("cas"))


@pytest.fixture(scope="module")
def token_key() -> TokenPublicKey:
    return make_token_key()


@pytest.fixture(scope="module")
def key() -> note.Ed25519Signer:
    return generate_federation_key("demo")


@pytest.fixture
def make(cas: list[CertificateAuthority], token_key: TokenPublicKey) -> Callable[..., Manifest]:
    def build(**kwargs: Any) -> Manifest:
        return manifest(cas, token_key, **kwargs)

    return build


# -- encoding -------------------------------------------------------------------------------


def test_sign_and_open_round_trip(make: Callable[..., Manifest], key: note.Ed25519Signer) -> None:
    m = make(members=3)
    signed = sign_manifest(m, key)
    opened = open_manifest(signed.data, key.verifier)
    assert opened.manifest == m
    assert opened.data == signed.data
    assert opened.manifest.authority.id == "hub"
    assert opened.manifest.member("m2") is not None
    assert opened.manifest.member("m2").uri == "spiffe://numbind/registry/m2"  # type: ignore[union-attr]
    text, sigs = note.split_note(signed.data)
    assert text == m.text()
    assert [s.name for s in sigs] == ["numbind.demo/federation"]


def test_encoding_is_one_canonical_line(make: Callable[..., Manifest]) -> None:
    m = make()
    lines = m.text().decode("ascii").split("\n")
    assert lines[0] == FORMAT_LINE and lines[2] == "" and len(lines) == 3
    body = json.loads(lines[1])
    assert lines[1] == json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert list(body) == sorted(body)
    assert body["version"] == 1 and body["federation"] == "demo"
    # Equal manifests are equal bytes (a second build with the same content).
    assert make().text() == m.text()


def test_non_ascii_names_are_escaped_not_raw(
    cas: list[CertificateAuthority], token_key: TokenPublicKey, key: note.Ed25519Signer
) -> None:
    hub = Member(
        "hub", "示例码号平台", "127.0.0.1:1", cas[0].cert_pem.decode(), ("lifecycle-authority",)
    )
    m = Manifest("demo", 1, T0, TokenService("h:1", token_key.key_id, (token_key,)), (hub,))
    assert m.text().isascii()
    assert b"\\u793a" in m.text()
    opened = open_manifest(sign_manifest(m, key).data, key.verifier)
    assert opened.manifest.authority.name == "示例码号平台"


# -- acceptance -----------------------------------------------------------------------------


def test_holder_takes_only_strictly_newer_versions(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    v1, v2, v3 = (sign_manifest(make(version=v), key) for v in (1, 2, 3))
    holder = ManifestHolder(key.verifier)
    assert holder.offer(v1.data).version == 1
    assert holder.offer(v3.data).version == 3  # versions may skip
    with pytest.raises(StaleManifest, match="version 2 is not newer than the held version 3"):
        holder.offer(v2.data)
    with pytest.raises(StaleManifest, match="version 3 is not newer"):
        holder.offer(v3.data)
    assert holder.held == v3


def test_same_version_other_content_is_a_fork(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    a = sign_manifest(make(version=4, members=2), key)
    b = sign_manifest(make(version=4, members=3), key)
    holder = ManifestHolder(key.verifier, a)
    with pytest.raises(ForkedManifest, match="two manifests with one version"):
        holder.offer(b.data)
    assert holder.held == a


def test_same_manifest_with_more_signatures_is_stale_not_a_fork(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    held = sign_manifest(make(version=4), key)
    witness = note.Ed25519Signer.generate("someone-else")
    again = note.sign_note(held.manifest.text(), key, witness)
    assert again != held.data
    holder = ManifestHolder(key.verifier, held)
    with pytest.raises(StaleManifest) as info:
        holder.offer(again)
    assert not isinstance(info.value, ForkedManifest)
    assert holder.held == held


def test_bad_signature_is_refused_and_held_stays(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    v1, v2 = sign_manifest(make(version=1), key), sign_manifest(make(version=2), key)
    text, (sig,) = note.split_note(v2.data)
    forged = note.Signature(sig.name, sig.key_id, bytes(64))
    holder = ManifestHolder(key.verifier, v1)
    with pytest.raises(ManifestSignatureError, match="does not verify"):
        holder.offer(text + b"\n" + forged.line())
    assert holder.held == v1


def test_signed_by_another_key_of_the_same_name_is_refused(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    impostor = generate_federation_key("demo")
    holder = ManifestHolder(key.verifier)
    with pytest.raises(ManifestSignatureError, match="not signed by the pinned federation key"):
        holder.offer(sign_manifest(make(version=9), impostor).data)
    assert holder.held is None


def test_another_federations_manifest_is_refused(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    held = sign_manifest(make(version=1), key)
    # Signed by the other federation's own key: not the pinned key.
    other_key = generate_federation_key("other")
    other = sign_manifest(make(federation="other", version=2), other_key)
    holder = ManifestHolder(key.verifier, held)
    with pytest.raises(ManifestSignatureError):
        holder.offer(other.data)
    # Signed by our key but naming another federation (a key that signs for two).
    crossed = note.sign_note(make(federation="other", version=2).text(), key)
    with pytest.raises(WrongFederation, match="for federation other"):
        holder.offer(crossed)
    assert holder.held == held


def test_sign_refuses_another_federations_key(make: Callable[..., Manifest]) -> None:
    with pytest.raises(WrongFederation, match=r"want numbind\.demo/federation"):
        sign_manifest(make(), generate_federation_key("other"))


def test_every_flipped_byte_is_refused(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    v1, v2 = sign_manifest(make(version=1), key), sign_manifest(make(version=2), key)
    holder = ManifestHolder(key.verifier, v1)
    refused = 0
    for i in range(len(v2.data)):
        for bit in (0x01, 0x80):
            data = bytearray(v2.data)
            data[i] ^= bit
            with pytest.raises(FederationError):
                holder.offer(bytes(data))
            refused += 1
    assert refused == 2 * len(v2.data)
    assert holder.held == v1
    assert holder.offer(v2.data) == v2


def test_oversize_data_is_refused_before_verifying(key: note.Ed25519Signer) -> None:
    with pytest.raises(MalformedManifest, match=f"at most {MAX_MANIFEST_BYTES} bytes"):
        open_manifest(b"x" * (MAX_MANIFEST_BYTES + 1), key.verifier)


def test_accept_manifest_without_held_is_open(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    signed = sign_manifest(make(version=7), key)
    assert accept_manifest(signed.data, key.verifier, None) == signed


def test_holder_rechecks_what_it_is_handed(
    make: Callable[..., Manifest], key: note.Ed25519Signer
) -> None:
    other = generate_federation_key("demo")
    with pytest.raises(ManifestSignatureError):
        ManifestHolder(key.verifier, sign_manifest(make(), other))


def test_federation_key_text_round_trip() -> None:
    key = generate_federation_key("demo")
    assert parse_federation_key(key.verifier.vkey() + "\n") == key.verifier
    other = note.Ed25519Signer.generate("not-a-federation")
    with pytest.raises(MalformedManifest, match=r"want numbind\.<federation id>/federation"):
        parse_federation_key(other.verifier.vkey())
    with pytest.raises(MalformedManifest, match="federation key"):
        parse_federation_key("garbage")


def test_successor_bumps_version_and_revalidates(make: Callable[..., Manifest]) -> None:
    m = make(members=3)
    nxt = m.successor(issued_at=T0 + 99, members=[x for x in m.members if x.id != "m1"])
    assert (nxt.version, nxt.issued_at, [x.id for x in nxt.members]) == (2, T0 + 99, ["hub", "m2"])
    with pytest.raises(MalformedManifest, match="exactly one lifecycle-authority"):
        m.successor(issued_at=T0, members=[x for x in m.members if x.id != "hub"])


# -- property: any valid manifest survives sign -> open unchanged ---------------------------

_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20).filter(
    lambda s: s.strip() != ""
)


@settings(max_examples=60, deadline=None)
@given(
    version=st.integers(1, 2**53 - 1),
    issued_at=st.integers(0, 2**40),
    n=st.integers(1, 4),
    names=st.lists(_names, min_size=4, max_size=4),
    ids=st.lists(
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True),
        min_size=4,
        max_size=4,
        unique=True,
    ),
    ports=st.lists(st.integers(1, 65535), min_size=4, max_size=4, unique=True),
)
def test_property_round_trip(
    cas: list[CertificateAuthority],
    token_key: TokenPublicKey,
    key: note.Ed25519Signer,
    version: int,
    issued_at: int,
    n: int,
    names: list[str],
    ids: list[str],
    ports: list[int],
) -> None:
    members = [
        Member(
            ids[i],
            names[i],
            f"10.0.0.{i}:{ports[i]}",
            cas[i].cert_pem.decode(),
            ("lifecycle-authority",) if i == 0 else ("binding-registry",),
        )
        for i in range(n)
    ]
    m = Manifest(
        "demo",
        version,
        issued_at,
        TokenService("ts.example:1", token_key.key_id, (token_key,)),
        tuple(sorted(members, key=lambda x: x.id)),
    )
    signed = sign_manifest(m, key)
    opened = open_manifest(signed.data, key.verifier)
    assert opened.manifest == m
    assert opened.manifest.text() == m.text()
    assert ManifestHolder(key.verifier).offer(signed.data) == opened
