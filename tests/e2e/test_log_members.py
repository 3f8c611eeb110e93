"""Every registry's log is witnessed by the others, over real gRPC (three registries).

A platform's orders and acks are leaves in its MEMBER's log. The manifest names that log
(`numbind.demo/log/<member>`, its key from the join request) and every registry's witness
key, the hub's included; each registry witnesses every other's log. A platform's SDK then
requires, by default, the cosignatures of every OTHER registry on its member's log; a
cosignature under a key the manifest does not name does not count; a member log that is
rewritten or rolled back is caught by the other registries' witnesses.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from numbind.protocol import note
from numbind.protocol.bundle import Bundle
from numbind.protocol.checkpoint import CosignatureSigner
from numbind.protocol.log_entries import canonical
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.registry.storage import log
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.sdk.log import LogClient, LogProofError
from numbind.v1 import log_pb2, log_pb2_grpc

from tests.e2e._cli import cli
from tests.e2e._fed_story import add, caught_up
from tests.e2e._federation import show
from tests.e2e._log import tamper
from tests.e2e._member_log import cosigned, take_proved
from tests.e2e._story import carrier, days_ago, publish, tokenize
from tests.e2e._three import Three, make_three, running

FAST = {"log_witness_seconds": 0.2, "log_checkpoint_seconds": 0.2}
PHONE = "+8613800138000"
WAIT = 30.0


@pytest.fixture
def pristine(tmp_path: Path) -> Three:
    return make_three(tmp_path)


async def _reissue(three: Three) -> tuple[Bundle, bytes]:
    """A platform `loan` at bank bound to a number the hub's carrier then reissues."""
    cm = add(three, "hub", "carrier", "cm")
    loan = add(three, "bank", "platform", "loan")
    token = await tokenize(loan, PHONE)
    await publish(loan, token, [(b"loan-0", days_ago(400))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(500))])
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
    await caught_up(three, "bank")
    return loan, token.token


async def test_a_platform_verifies_its_orders_with_both_other_registries_cosignatures(
    pristine: Three, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(pristine, **FAST) as three:
        loan, token = await _reissue(three)
        await take_proved(loan, three.root / "c-loan")
        # What the feed held the order to: bank's own log, under the key the manifest
        # names, cosigned by the hub and net (never by bank itself).
        async with secure_channel(loan) as channel:
            client = LogClient.for_bundle(channel, loan.directory)
            cp = await client.checkpoint()
            assert cp.verified.checkpoint.origin == "numbind.demo/log/bank"
            manifest = FederationDir(three.dir("hub")).require().manifest
            assert cp.log_key == manifest.log_of("bank").key  # type: ignore[union-attr]
            assert {w.name for w in client.policy_for(cp).witnesses} == {
                "numbind.demo/witness/hub",
                "numbind.demo/witness/net",
            }
            assert client.policy_for(cp).quorum == 2
            assert {c.witness for c in cp.verified.cosignatures} == {
                "numbind.demo/witness/hub",
                "numbind.demo/witness/net",
            }
            # What the member's log shows the witnesses: commitments only, no token,
            # number or account_ref (openings stay with their holders).
            served = b"".join(await client.leaves(0, cp.size))
            assert len(served) == 32 * cp.size
            for secret in (token, token.hex().encode(), PHONE.encode(), b"loan-0"):
                assert secret not in served and secret not in cp.signed
        # `numbind log` with the platform's bundle holds bank's log to the same policy.
        code, out, err = await cli(
            capsys, "log", "checkpoint", "--bundle", loan.directory, "--json"
        )
        assert code == 0, err
        shown_cp = json.loads(out)
        assert shown_cp["origin"] == "numbind.demo/log/bank"
        assert shown_cp["policy"] == {
            "witnesses": ["numbind.demo/witness/hub", "numbind.demo/witness/net"],
            "quorum": 2,
        }
        # Every registry witnesses the two others' logs, and says so.
        shown = show(three.dir("net"))
        assert shown["witnessing"] == [
            {"member": "bank", "origin": "numbind.demo/log/bank"},
            {"member": "hub", "origin": "numbind.demo/log"},
        ]
        assert shown["log_alarms"] == []


async def test_a_cosignature_under_a_key_the_manifest_does_not_name_does_not_count(
    pristine: Three,
) -> None:
    # net is down: bank's log is cosigned by the hub alone.
    async with running(pristine, "hub", "bank", **FAST) as three:
        bank = three.registry("bank")
        leaf = LogLeaf("key", "k", None, canonical({"t": "key", "key_id": "k"}))
        bank.db.transact(lambda s: log.append(s, [leaf] * 3))
        size = await cosigned(three, "bank", quorum=1)
        signed = bank.db.transact(lambda s: log.checkpoint_at(s, size), write=False)
        assert signed is not None
        text, _ = note.split_note(signed)
        # The hub offering a cosignature under net's name with another key: refused.
        impostor = CosignatureSigner.generate("numbind.demo/witness/net")
        files = FederationDir(three.dir("hub"))
        peers = PeerChannels(files, files.require().manifest.members)
        try:
            stub = log_pb2_grpc.LogStub(peers.get("bank"))
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.AddCosignature(
                    log_pb2.AddCosignatureRequest(
                        tree_size=size,
                        signature_line=impostor.cosign(text, 1_700_000_000).note_signature().line(),
                        witness_key=impostor.verifier.vkey(),
                    ),
                    timeout=10,
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await peers.close()
        # bank itself attaching it (as a malicious member would) gains nothing: the
        # platform's default policy counts only net's real key, and says net is missing.
        line = impostor.cosign(text, 1_700_000_000).note_signature()
        bank.db.transact(
            lambda s: log.replace_checkpoint(s, size, note.add_signatures(signed, [line]))
        )
        loan = add(three, "bank", "platform", "loan")
        async with secure_channel(loan) as channel:
            client = LogClient.for_bundle(channel, loan.directory, quorum_wait=1.5)
            with pytest.raises(LogProofError) as refused:
                await client.prove([size - 1])
            assert refused.value.failure == "quorum"
            assert "numbind.demo/witness/net" in str(refused.value)


@pytest.mark.parametrize(
    ("change", "keep", "grow", "failure"),
    [
        # (a) leaf 1 rewritten, the log then grows as usual: no consistency proof holds
        (lambda leaves: [leaves[0], bytes(32), *leaves[2:]], 0, 2, "rewrite"),
        # (c) rolled back to an older, smaller tree
        (lambda leaves: leaves[:2], 2, 0, "rollback"),
    ],
    ids=["rewrite", "rollback"],
)
async def test_a_member_log_rewritten_or_rolled_back_is_caught_by_the_other_registries(
    pristine: Three, change: Any, keep: int, grow: int, failure: str
) -> None:
    async with running(pristine, **FAST) as three:
        bank = three.registry("bank")
        leaf = LogLeaf("key", "k", None, canonical({"t": "key", "key_id": "k"}))
        bank.db.transact(lambda s: log.append(s, [leaf] * 4))
        await cosigned(three, "bank")
        tamper(SimpleNamespace(registry=bank), change, keep)  # type: ignore[arg-type]
        if grow:
            bank.db.transact(lambda s: log.append(s, [leaf] * grow))
        for witness in ("hub", "net"):
            for _ in range(int(WAIT * 10)):
                alarms = await three.registry(witness).log.alarms()
                if alarms:
                    break
                await asyncio.sleep(0.1)
            assert [(a.origin, a.failure) for a in alarms][:1] == [
                ("numbind.demo/log/bank", failure)
            ], witness
            shown = show(three.dir(witness))
            assert shown["log_alarms"][0]["origin"] == "numbind.demo/log/bank"
        # bank itself raised none: it does not witness its own log.
        assert await bank.log.alarms() == []
