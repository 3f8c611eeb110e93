"""Trust in the hub's log comes from the signed federation manifest, over real gRPC.

The manifest names the hub's log key and each member's witness key; a client holding a
bundle issued in the federation requires, by default, every member's cosignature; a
cosignature by a key the manifest does not name does not count; a newer manifest (a
member added) changes what is required.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from numbind.protocol import note
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.log_entries import canonical
from numbind.protocol.manifest import open_manifest, sign_manifest
from numbind.registry import operator
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.witness import alarms_in
from numbind.registry.log_key import load_or_create, load_or_create_witness
from numbind.registry.storage import log
from numbind.sdk.log import LogClient, LogProofError
from numbind.v1 import log_pb2, log_pb2_grpc

from tests.e2e._cli import cli
from tests.e2e._fed_story import add
from tests.e2e._federation import fed, ok, show
from tests.e2e._three import MEMBERS, Three, free_address, make_three, running

FAST = {"log_witness_seconds": 0.2, "log_checkpoint_seconds": 0.2}


def _append(three: Three, n: int = 3) -> None:
    leaf = LogLeaf("key", "k", None, canonical({"t": "key", "key_id": "k"}))
    three.registry("hub").db.transact(lambda s: log.append(s, [leaf] * n))


def _admin_bundle(three: Three) -> Path:
    return three.dir("hub") / operator.ADMIN_BUNDLE


def _join(three: Three, name: str) -> None:
    req, grant = three.root / f"{name}.req", three.root / f"{name}.grant"
    address = three.addresses[name]
    fed("request", three.dir(name), "--id", name, "--address", address, "--out", req)
    fed("add-member", three.dir("hub"), req, "--out", grant)
    fed("accept", three.dir(name), grant)


@pytest.fixture
def pristine(tmp_path: Path) -> Three:
    """A fresh federation per test: a checkpoint net cosigned in one test would satisfy
    the policy in the next."""
    return make_three(tmp_path)


def test_the_manifest_names_the_hubs_log_and_every_members_witness_key(
    pristine: Three,
) -> None:
    manifest = FederationDir(pristine.dir("hub")).require().manifest
    assert manifest.log is not None
    assert manifest.log.origin == "numbind.demo/log"
    assert manifest.log.key == load_or_create(pristine.dir("hub")).verifier.vkey()
    policy = manifest.witness_policy()
    assert policy.quorum == 2
    assert [w.vkey() for w in policy.witnesses] == [
        load_or_create_witness(pristine.dir(m)).verifier.vkey() for m in MEMBERS
    ]
    shown = show(pristine.dir("hub"))  # `federation show --json`
    assert shown["log"] == {"origin": "numbind.demo/log", "key": manifest.log.key}
    # Every registry, the hub included, witnesses the others' logs under a named key.
    assert {m["id"]: m["witness_key"] for m in shown["members"]} == {
        m: load_or_create_witness(pristine.dir(m)).verifier.vkey() for m in ("hub", *MEMBERS)
    }
    # Each member's own log is named too, under `numbind.demo/log/<member>`.
    assert {m["id"]: m["log_key"] for m in shown["members"]} == {
        m: load_or_create(pristine.dir(m)).verifier.vkey() for m in ("hub", *MEMBERS)
    }
    assert [m.log.origin for m in manifest.members if m.log] == [
        f"numbind.demo/log/{m}" for m in MEMBERS
    ]
    assert shown["witnessing"] == [
        {"member": m, "origin": f"numbind.demo/log/{m}"} for m in MEMBERS
    ]
    # The bundles the hub hands out hold the manifest and the key to check it under.
    bundle = _admin_bundle(pristine)
    key = note.Ed25519Verifier.parse((bundle / "federation.vkey").read_text().strip())
    assert open_manifest((bundle / "manifest.note").read_bytes(), key).version >= 1


async def test_the_default_policy_wants_both_members_and_names_the_missing_one(
    pristine: Three,
) -> None:
    async with running(pristine, "hub", "bank", **FAST) as three:
        _append(three)
        files = FederationDir(three.dir("bank"))
        peers = PeerChannels(files, files.require().manifest.members)
        try:
            client = LogClient.for_bundle(peers.get("hub"), _admin_bundle(three), quorum_wait=1.5)
            # net is down: bank cosigns, but the policy wants net too, and says so.
            with pytest.raises(LogProofError) as refused:
                await client.checkpoint()
            assert refused.value.failure == "quorum"
            assert "numbind.demo/witness/net" in str(refused.value)
            # The admin bundle was written at `federation init`; the registry's newer
            # manifest (both members named) came with the checkpoint.
            assert [w.name for w in client.trust.witnesses] == [
                f"numbind.demo/witness/{m}" for m in MEMBERS
            ]

            await three.start("net", **FAST)
            client.quorum_wait = 30.0
            cp = await client.checkpoint()
            assert {c.witness for c in cp.verified.cosignatures} == {
                f"numbind.demo/witness/{m}" for m in MEMBERS
            }
            assert cp.verified.checkpoint.origin == "numbind.demo/log"
            proved = await client.prove([0, 2], checkpoint=cp)
            assert [p.index for p in proved] == [0, 2]
        finally:
            await peers.close()


async def test_a_cosignature_by_a_key_the_manifest_does_not_name_does_not_count(
    pristine: Three,
) -> None:
    async with running(pristine, "hub", **FAST) as three:
        _append(three)
        files = FederationDir(three.dir("bank"))
        peers = PeerChannels(files, files.require().manifest.members)
        try:
            stub = log_pb2_grpc.LogStub(peers.get("hub"))
            resp = await stub.GetCheckpoint(log_pb2.GetCheckpointRequest(), timeout=10)
            text, _ = note.split_note(bytes(resp.checkpoint))
            # The manifest comes along only for a caller holding an older one.
            held = FederationDir(three.dir("hub")).require().signed
            assert bytes(resp.manifest) == held.data
            for version, sent in ((held.version - 1, held.data), (held.version, b"")):
                again = await stub.GetCheckpoint(
                    log_pb2.GetCheckpointRequest(manifest_version=version), timeout=10
                )
                assert bytes(again.manifest) == sent
            # bank's first cosignature, under its own name but not the key the manifest
            # names: pinned on first use before, refused now.
            impostor = CosignatureSigner.generate("numbind.demo/witness/bank")
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.AddCosignature(
                    log_pb2.AddCosignatureRequest(
                        tree_size=resp.tree_size,
                        signature_line=impostor.cosign(text, 1_700_000_000).note_signature().line(),
                        witness_key=impostor.verifier.vkey(),
                    ),
                    timeout=10,
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "manifest" in (denied.value.details() or "")

            # A hub that attaches a cosignature under net's name with another key (as a
            # malicious hub would) gains nothing: the client counts only net's real key.
            rogue = CosignatureSigner.generate("numbind.demo/witness/net")
            line = rogue.cosign(text, 1_700_000_000).note_signature()
            three.registry("hub").db.transact(
                lambda s: log.replace_checkpoint(
                    s, resp.tree_size, note.add_signatures(bytes(resp.checkpoint), [line])
                )
            )
            await three.start("bank", **FAST)  # bank cosigns for real
            client = LogClient.for_bundle(peers.get("hub"), _admin_bundle(three), quorum_wait=2.0)
            with pytest.raises(LogProofError) as refused:
                await client.checkpoint()
            assert refused.value.failure == "quorum"
            assert "numbind.demo/witness/net (no cosignature)" in str(refused.value)
        finally:
            await peers.close()


async def test_a_member_added_to_the_manifest_is_required_from_then_on(tmp_path: Path) -> None:
    three = Three(
        tmp_path,
        {name: free_address() for name in ("hub", *MEMBERS)},
        {"hub": None, "bank": None, "net": None},
    )
    for name in ("hub", *MEMBERS):
        ok("admin", "init", "--data-dir", three.dir(name))
    fed("init", three.dir("hub"), "--id", "demo", "--address", three.addresses["hub"])
    _join(three, "bank")
    bundle = _admin_bundle(three)
    async with running(three, "hub", "bank", **FAST):
        _append(three)
        files = FederationDir(three.dir("bank"))
        peers = PeerChannels(files, files.require().manifest.members)
        try:
            client = LogClient.for_bundle(peers.get("hub"), bundle, quorum_wait=30.0)
            cp = await client.checkpoint()
            assert [c.witness for c in cp.verified.cosignatures] == ["numbind.demo/witness/bank"]

            _join(three, "net")  # the running hub signs the next version, naming net
            _append(three)
            client.quorum_wait = 1.5
            with pytest.raises(LogProofError) as refused:
                await client.checkpoint()
            assert "numbind.demo/witness/net" in str(refused.value)
            # The newer manifest came with the checkpoint and replaced the bundle's.
            held = client.federation.held if client.federation else None
            assert held is not None and held.manifest.member("net") is not None
            assert (bundle / "manifest.note").read_bytes() == held.data

            await three.start("net", **FAST)
            client.quorum_wait = 30.0
            cp = await client.checkpoint()
            assert {c.witness for c in cp.verified.cosignatures} == {
                f"numbind.demo/witness/{m}" for m in MEMBERS
            }
        finally:
            await peers.close()
            await asyncio.sleep(0)


async def test_log_commands_default_to_the_manifest_policy_and_say_what_is_missing(
    pristine: Three, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(pristine, "hub", "bank", **FAST) as three:
        cm = add(three, "hub", "carrier", "cm")
        assert (cm.directory / "federation.vkey").exists()
        _append(three)
        base = ("log", "checkpoint", "--bundle", cm.directory, "--quorum-wait", "1")
        rc, _, err = await cli(capsys, *base)
        assert rc != 0
        assert "quorum" in err and "numbind.demo/witness/net" in err
        bank = load_or_create_witness(three.dir("bank")).verifier.vkey()
        for flags, policy in (
            (("--witness", bank), {"witnesses": ["numbind.demo/witness/bank"], "quorum": 1}),
            (("--no-witnesses",), {"witnesses": [], "quorum": 0}),
        ):
            rc, out, err = await cli(capsys, *base, "--json", *flags)
            assert rc == 0, err
            shown = json.loads(out)
            assert (shown["origin"], shown["policy"]) == ("numbind.demo/log", policy)
        # The log key is the manifest's: no key was pinned on first use.
        assert not (cm.directory / "log.vkey").exists()


async def test_a_member_witnesses_only_the_log_key_the_manifest_names(pristine: Three) -> None:
    # The hub's log key is swapped for another of the same origin before the members ever
    # saw it: on first use a member would have pinned it; the manifest names the old one.
    key_file = pristine.dir("hub") / "log" / "log.key"
    swapped = note.Ed25519Signer.generate("numbind.demo/log")
    key_file.write_text(swapped.skey() + "\n")
    async with running(pristine, "hub", "bank", **FAST) as three:
        _append(three)
        for _ in range(150):
            alarms = alarms_in(three.settings("bank").effective_database_url)
            if alarms:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("bank never raised an alarm")
        assert alarms[0]["failure"] == "unknown-key"
        assert alarms[0]["origin"] == "numbind.demo/log"


def test_manifests_from_before_gain_the_log_and_witness_keys(tmp_path: Path) -> None:
    """A member that joined without a witness key sends it by requesting again; a manifest
    without the log gains it at `federation refresh`."""
    three = Three(tmp_path, {n: free_address() for n in ("hub", "bank")}, {})
    for name in ("hub", "bank"):
        ok("admin", "init", "--data-dir", three.dir(name))
    fed("init", three.dir("hub"), "--id", "demo", "--address", three.addresses["hub"])
    req, grant = tmp_path / "bank.req", tmp_path / "bank.grant"
    fed(
        "request", three.dir("bank"), "--id", "bank", "--address", three.addresses["bank"],
        "--out", req,
    )  # fmt: skip
    old_style = json.loads(req.read_text())
    del old_style["witness_public_key"]
    del old_style["log_public_key"]
    req.with_suffix(".old").write_text(json.dumps(old_style))
    fed("add-member", three.dir("hub"), req.with_suffix(".old"), "--out", grant)
    hub = FederationDir(three.dir("hub"))
    before = hub.require().manifest
    assert before.member("bank") is not None and before.member("bank").witness is None  # type: ignore[union-attr]
    assert before.log_of("bank") is None  # its own log: not named, witnessed by no one

    fed("add-member", three.dir("hub"), req, "--out", grant)
    after = hub.require().manifest
    assert after.version == before.version + 1
    assert after.witness_policy().witnesses == (
        load_or_create_witness(three.dir("bank")).renamed("numbind.demo/witness/bank").verifier,
    )
    # ... and its own log's key, named for its origin (the hub's witness key along).
    bank_log = after.log_of("bank")
    assert bank_log is not None and bank_log.origin == "numbind.demo/log/bank"
    assert [w.name for w in after.witness_policy("bank").witnesses] == ["numbind.demo/witness/hub"]

    # A manifest without the log (as signed before it was named there) gains it at refresh.
    key = hub.load_key()
    assert key is not None
    no_hub_witness = [replace(m, witness_key=None) if m.id == "hub" else m for m in after.members]
    stripped = sign_manifest(
        after.successor(issued_at=after.issued_at + 1, log=None, members=no_hub_witness), key
    )
    hub.write_manifest(stripped)
    assert hub.require().manifest.log is None
    fed("refresh", three.dir("hub"))
    refreshed = hub.require().manifest
    assert refreshed.log is not None
    assert refreshed.log.key == load_or_create(three.dir("hub")).verifier.vkey()
    assert refreshed.version == stripped.version + 1
    assert refreshed.authority.witness_key == (
        load_or_create_witness(three.dir("hub")).verifier.vkey()
    )
