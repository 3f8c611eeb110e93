"""Every registry's log in the manifest: each member's own log key, the hub's witness key.

The member log key is an optional field (a manifest without it encodes as before); it must
be named for the member's origin `numbind.<federation>/log/<member>`; the default policy
for registry R's log is every OTHER registry's witness key; the join request carries the
log's public key, and the member's key file takes the name the manifest gives it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from numbind.protocol import note, voprf
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.manifest import (
    LogInfo,
    MalformedManifest,
    Manifest,
    Member,
    TokenPublicKey,
    TokenService,
    generate_federation_key,
    member_log_origin,
    open_manifest,
    sign_manifest,
    witness_key_name,
)
from numbind.registry import log_key
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.join import JoinRequest
from numbind.registry.pki import CertificateAuthority

T0 = 1_700_000_000
IDS = ("hub", "m1", "m2")


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return [CertificateAuthority.create(root / f"ca{i}") for i in range(3)]


def _witness(member_id: str) -> str:
    return CosignatureSigner.generate(witness_key_name("demo", member_id)).verifier.vkey()


def _log(name: str) -> str:
    return note.Ed25519Signer.generate(name).verifier.vkey()


def _manifest(
    cas: list[CertificateAuthority], logs: dict[str, str], witnesses: dict[str, str]
) -> Manifest:
    token = TokenPublicKey("00aa", voprf.generate_key_pair()[1])
    members = []
    for i, mid in enumerate(IDS):
        roles = ("lifecycle-authority", "token-service") if mid == "hub" else ("binding-registry",)
        members.append(
            Member(
                mid,
                mid,
                f"127.0.0.1:{7443 + i}",
                cas[i].cert_pem.decode(),
                roles,  # type: ignore[arg-type]
                witnesses.get(mid),
                logs.get(mid) if mid != "hub" else None,
            )
        )
    return Manifest(
        federation="demo",
        version=1,
        issued_at=T0,
        token_service=TokenService("127.0.0.1:7443", "00aa", (token,)),
        members=tuple(members),
        log=LogInfo("numbind.demo/log", logs["hub"]) if "hub" in logs else None,
    )


def test_member_logs_round_trip_and_each_logs_policy_is_every_other_registry(
    cas: list[CertificateAuthority],
) -> None:
    logs = {"hub": _log("numbind.demo/log")} | {
        m: _log(member_log_origin("demo", m)) for m in IDS[1:]
    }
    witnesses = {m: _witness(m) for m in IDS}
    fed_key = generate_federation_key("demo")
    signed = sign_manifest(_manifest(cas, logs, witnesses), fed_key)
    opened = open_manifest(signed.data, fed_key.verifier).manifest
    assert {m.id: log.key for m, log in opened.logs()} == logs
    assert opened.log_of("m1") == LogInfo("numbind.demo/log/m1", logs["m1"])
    for owner in IDS:
        policy = opened.witness_policy(owner)
        assert [w.vkey() for w in policy.witnesses] == [witnesses[m] for m in IDS if m != owner]
        assert policy.quorum == 2
    # The hub's log stays the default.
    assert opened.witness_policy() == opened.witness_policy("hub")


def test_a_manifest_without_member_logs_encodes_as_before(cas: list[CertificateAuthority]) -> None:
    manifest = _manifest(cas, {"hub": _log("numbind.demo/log")}, {})
    body = json.loads(manifest.text().split(b"\n")[1])
    assert all("log_key" not in m for m in body["members"])
    assert [m.id for m, _ in manifest.logs()] == ["hub"]
    assert manifest.log_of("m1") is None


def test_refuses_a_misnamed_shared_or_malformed_member_log_key(
    cas: list[CertificateAuthority],
) -> None:
    with pytest.raises(MalformedManifest, match=r"members\['m1'\]\.log_key"):
        _manifest(cas, {"m1": _log("numbind.demo/log/m2")}, {})
    with pytest.raises(MalformedManifest, match=r"members\['m1'\]\.log_key"):
        _manifest(cas, {"m1": _log("numbind.demo/log")}, {})  # the hub's origin
    with pytest.raises(MalformedManifest, match="log_key"):
        _manifest(cas, {"m1": _witness("m1")}, {})  # a cosignature key, not Ed25519
    manifest = _manifest(cas, {}, {})
    with pytest.raises(MalformedManifest, match="log_key"):
        replace(manifest.members[1], log_key="not a key")


def test_the_join_request_carries_the_log_key_and_the_key_file_takes_its_name(
    cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    data_dir = tmp_path / "m1"
    signer = log_key.load_or_create(data_dir)  # before joining: no federation yet
    assert signer.name == "numbind.local/log"
    req = JoinRequest(
        "m1", "m1", "127.0.0.1:7444", cas[1].cert_pem.decode(), None, signer.verifier.public_key
    )
    (tmp_path / "m1.req").write_bytes(req.to_bytes())
    read = JoinRequest.read(tmp_path / "m1.req")
    assert read == req
    named = read.log_key("demo")
    assert named is not None and named == signer.renamed("numbind.demo/log/m1").verifier.vkey()
    # Installed in a manifest naming that key, the member's log signs under that origin.
    fed_key = generate_federation_key("demo")
    signed = sign_manifest(_manifest(cas, {"m1": named}, {}), fed_key)
    files = FederationDir(data_dir)
    files.write_pin(fed_key.verifier)
    files.write_self("m1")
    files.write_manifest(signed)
    assert log_key.load_or_create(data_dir).verifier.vkey() == named
    # A manifest naming another key for it leaves the key file's own name (and a warning).
    other = sign_manifest(
        replace(
            _manifest(cas, {"m1": _log("numbind.demo/log/m1")}, {}), version=2, issued_at=T0 + 1
        ),
        fed_key,
    )
    files.write_manifest(other)
    assert log_key.load_or_create(data_dir).name == "numbind.local/log"


def test_the_log_key_reads_the_manifest_at_most_once_and_not_when_handed_it(
    cas: list[CertificateAuthority], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "m1"
    signer = log_key.load_or_create(data_dir)  # named numbind.local/log
    named = signer.renamed("numbind.demo/log/m1").verifier.vkey()
    fed_key = generate_federation_key("demo")
    files = FederationDir(data_dir)
    files.write_pin(fed_key.verifier)
    files.write_self("m1")
    files.write_manifest(sign_manifest(_manifest(cas, {"m1": named}, {}), fed_key))
    installed = files.load()
    load = FederationDir.load
    reads: list[Path] = []

    def counting(self: FederationDir) -> object:
        reads.append(data_dir)
        return load(self)

    monkeypatch.setattr(FederationDir, "load", counting)
    # The key's name differs from the origin: the origin and the manifest's naming of
    # the key both come from one verified read.
    assert log_key.load_or_create(data_dir).verifier.vkey() == named
    assert len(reads) == 1
    # Start-up hands over the federation it loaded: no read at all.
    assert log_key.load_or_create(data_dir, installed=installed).verifier.vkey() == named
    assert log_key.load_or_create_witness(data_dir, installed).name == ("numbind.demo/witness/m1")
    assert len(reads) == 1
