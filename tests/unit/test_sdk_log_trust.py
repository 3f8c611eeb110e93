"""numbind.sdk.log_trust: a bundle's federation key and manifest decide whose word the SDK
takes for the hub's log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from numbind.protocol import note, voprf
from numbind.protocol.bundle import FEDERATION_KEY_FILE, MANIFEST_FILE, write_federation_trust
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.manifest import (
    FederationError,
    LogInfo,
    Manifest,
    Member,
    SignedManifest,
    TokenPublicKey,
    TokenService,
    generate_federation_key,
    sign_manifest,
    witness_key_name,
)
from numbind.registry.pki import CertificateAuthority
from numbind.sdk.log_trust import FederationTrust

LOG = note.Ed25519Signer.generate("numbind.demo/log").verifier.vkey()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return [CertificateAuthority.create(root / f"ca{i}") for i in range(3)]


def _signed(
    cas: list[CertificateAuthority], key: note.Ed25519Signer, version: int, members: int
) -> SignedManifest:
    token = TokenPublicKey("00aa", voprf.generate_key_pair()[1])
    roles = ("lifecycle-authority", "token-service")
    out = [Member("hub", "HUB", "127.0.0.1:7443", cas[0].cert_pem.decode(), roles)]  # type: ignore[arg-type]
    for i in range(1, members + 1):
        witness = CosignatureSigner.generate(witness_key_name("demo", f"m{i}"))
        out.append(
            Member(
                f"m{i}",
                f"m{i}",
                f"127.0.0.1:{7443 + i}",
                cas[i].cert_pem.decode(),
                ("binding-registry",),
                witness.verifier.vkey(),
            )
        )
    manifest = Manifest(
        "demo",
        version,
        1_700_000_000 + version,
        TokenService("127.0.0.1:7443", "00aa", (token,)),
        tuple(out),
        LogInfo("numbind.demo/log", LOG),
    )
    return sign_manifest(manifest, key)


def test_newer_manifests_replace_the_bundles_and_set_the_policy(
    cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    key = generate_federation_key("demo")
    v1, v2 = _signed(cas, key, 1, 1), _signed(cas, key, 2, 2)
    write_federation_trust(tmp_path, key.verifier.vkey(), v1.data)
    trust = FederationTrust.from_bundle(tmp_path)
    assert trust is not None
    hub_log = trust.trust_for(LOG)
    assert hub_log is not None and hub_log.named and hub_log.policy.quorum == 1

    assert trust.offer(v2.data) is True
    assert (tmp_path / MANIFEST_FILE).read_bytes() == v2.data
    assert trust.trust_for(LOG).policy.quorum == 2  # type: ignore[union-attr]
    assert trust.offer(v1.data) is False  # older: ignored, v2 stays
    assert trust.offer(b"") is False
    assert trust.held == v2

    forged = _signed(cas, generate_federation_key("demo"), 3, 2)
    with pytest.raises(FederationError):
        trust.offer(forged.data)
    assert trust.held == v2 and (tmp_path / MANIFEST_FILE).read_bytes() == v2.data


def test_the_hubs_origin_gets_the_manifests_key_whatever_key_is_named(
    cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    key = generate_federation_key("demo")
    write_federation_trust(tmp_path, key.verifier.vkey(), _signed(cas, key, 1, 2).data)
    trust = FederationTrust.from_bundle(tmp_path)
    assert trust is not None
    impostor = note.Ed25519Signer.generate("numbind.demo/log").verifier.vkey()
    named = trust.trust_for(impostor)
    assert named is not None and named.log_key == LOG  # so the impostor's notes fail
    # A member's own log is not the manifest's: first use, no witnesses.
    own = note.Ed25519Signer.generate("numbind.demo/log/m1").verifier.vkey()
    assert trust.trust_for(own) is None


def test_a_bundle_without_a_federation_key_is_a_federation_of_one(tmp_path: Path) -> None:
    assert FederationTrust.from_bundle(tmp_path) is None
    (tmp_path / FEDERATION_KEY_FILE).write_text("not a key\n")
    with pytest.raises(FederationError):
        FederationTrust.from_bundle(tmp_path)


def test_a_hub_that_kept_a_local_origin_is_told_apart_by_its_key(
    cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    """A hub and a member that both served before joining both sign as numbind.local/log."""
    key = generate_federation_key("demo")
    hub_key = note.Ed25519Signer.generate("numbind.local/log").verifier.vkey()
    signed = _signed(cas, key, 1, 1)
    local = replace(signed.manifest, log=LogInfo("numbind.local/log", hub_key))
    write_federation_trust(tmp_path, key.verifier.vkey(), sign_manifest(local, key).data)
    trust = FederationTrust.from_bundle(tmp_path)
    assert trust is not None
    assert trust.trust_for(hub_key) is not None
    member_key = note.Ed25519Signer.generate("numbind.local/log").verifier.vkey()
    assert trust.trust_for(member_key) is None


async def test_the_pinned_log_key_is_read_once(
    cas: list[CertificateAuthority], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc
    from numbind.sdk.log import LOG_KEY_FILE, LogClient

    fed = generate_federation_key("demo")
    write_federation_trust(tmp_path, fed.verifier.vkey(), _signed(cas, fed, 1, 2).data)
    (tmp_path / LOG_KEY_FILE).write_text(LOG + "\n", encoding="ascii")
    read_text = Path.read_text
    reads: list[Path] = []

    def counting(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == LOG_KEY_FILE:
            reads.append(self)
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting)
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        client = LogClient.for_bundle(channel, tmp_path)
        for _ in range(3):
            _ = client.trust  # asked before every checkpoint
        # A registry naming another key is held to the pinned one, from memory.
        assert client._pinned("other") == LOG
    assert len(reads) == 1
