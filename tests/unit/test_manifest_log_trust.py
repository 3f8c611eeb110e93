"""The manifest's log trust: the hub's log key and the members' witness keys.

Both are optional fields, so a manifest without them encodes (and opens) exactly as
before; with them, the default witness policy is every member's witness key."""

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
    open_manifest,
    sign_manifest,
    witness_key_name,
)
from numbind.registry.federation.join import JoinRequest
from numbind.registry.pki import CertificateAuthority

T0 = 1_700_000_000


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return [CertificateAuthority.create(root / f"ca{i}") for i in range(3)]


def _witness(member_id: str) -> str:
    return CosignatureSigner.generate(witness_key_name("demo", member_id)).verifier.vkey()


def _manifest(cas: list[CertificateAuthority], **log_and_keys: str | None) -> Manifest:
    token = TokenPublicKey("00aa", voprf.generate_key_pair()[1])
    roles = ("lifecycle-authority", "token-service")
    members = [Member("hub", "HUB", "127.0.0.1:7443", cas[0].cert_pem.decode(), roles)]  # type: ignore[arg-type]
    for i, mid in enumerate(("m1", "m2"), start=1):
        members.append(
            Member(
                mid,
                mid,
                f"127.0.0.1:{7443 + i}",
                cas[i].cert_pem.decode(),
                ("binding-registry",),
                log_and_keys.get(mid),
            )
        )
    log_key = log_and_keys.get("log")
    return Manifest(
        federation="demo",
        version=1,
        issued_at=T0,
        token_service=TokenService("127.0.0.1:7443", "00aa", (token,)),
        members=tuple(members),
        log=LogInfo("numbind.demo/log", log_key) if log_key else None,
    )


def test_log_and_witness_keys_round_trip_and_make_the_default_policy(
    cas: list[CertificateAuthority],
) -> None:
    fed_key = generate_federation_key("demo")
    log_key = note.Ed25519Signer.generate("numbind.demo/log").verifier.vkey()
    m1, m2 = _witness("m1"), _witness("m2")
    signed = sign_manifest(_manifest(cas, log=log_key, m1=m1, m2=m2), fed_key)
    opened = open_manifest(signed.data, fed_key.verifier).manifest
    assert opened.log == LogInfo("numbind.demo/log", log_key)
    policy = opened.witness_policy()
    assert (policy.quorum, [w.vkey() for w in policy.witnesses]) == (2, [m1, m2])


def test_a_manifest_without_them_encodes_as_before_and_needs_no_cosignature(
    cas: list[CertificateAuthority],
) -> None:
    manifest = _manifest(cas)
    body = json.loads(manifest.text().split(b"\n")[1])
    assert "log" not in body and all("witness_key" not in m for m in body["members"])
    assert manifest.witness_policy().quorum == 0
    # A member without a witness key is simply not required.
    assert _manifest(cas, m1=_witness("m1")).witness_policy().quorum == 1


def test_refuses_misnamed_shared_or_malformed_keys(cas: list[CertificateAuthority]) -> None:
    log_key = note.Ed25519Signer.generate("numbind.demo/log").verifier.vkey()
    with pytest.raises(MalformedManifest, match=r"members\['m1'\]\.witness_key"):
        _manifest(cas, m1=_witness("m2"))  # m2's name on m1
    seed = CosignatureSigner.generate(witness_key_name("demo", "m1"))
    twin = seed.renamed(witness_key_name("demo", "m2")).verifier.vkey()
    with pytest.raises(MalformedManifest, match="share one witness key"):
        _manifest(cas, m1=seed.verifier.vkey(), m2=twin)
    with pytest.raises(MalformedManifest, match=r"log\.key"):
        LogInfo("numbind.demo/log", note.Ed25519Signer.generate("other/log").verifier.vkey())
    with pytest.raises(MalformedManifest, match=r"log\.key"):
        LogInfo("numbind.demo/log", "not a key")
    with pytest.raises(MalformedManifest, match="witness_key"):
        replace(_manifest(cas, log=log_key).members[1], witness_key=log_key)  # not type 0x04


def test_a_join_request_carries_the_witness_key_the_manifest_will_name(
    cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    signer = CosignatureSigner.generate("numbind.local/witness/self")
    req = JoinRequest(
        "m1", "M1", "127.0.0.1:7444", cas[1].cert_pem.decode(), signer.verifier.public_key
    )
    path = tmp_path / "m1.req"
    path.write_bytes(req.to_bytes())
    read = JoinRequest.read(path)
    assert read == req
    # Named for the federation it joins, the same key: what the member will cosign with.
    assert read.witness_key("demo") == signer.renamed("numbind.demo/witness/m1").verifier.vkey()
    # A request from before witness keys existed still reads, and names none.
    old = json.loads(req.to_bytes())
    del old["witness_public_key"]
    path.write_text(json.dumps(old))
    assert JoinRequest.read(path).witness_key("demo") is None
