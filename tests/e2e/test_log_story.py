"""The revocation story with proofs: every step of a reissue is in the registry's log, each
platform's SDK proves its order there before acking, the carrier proves its revocation from
its bundle, and a monitor replaying the log passes the honest run and catches a dropped
order. Nothing in the log's leaves or checkpoints names a token, account or subscriber."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from numbind.protocol.bundle import Bundle
from numbind.protocol.checkpoint import Cosignature, WitnessPolicy
from numbind.protocol.log_entries import Opening
from numbind.registry.domain import logged
from numbind.registry.federation.witness import Witness
from numbind.registry.log_key import load_or_create_witness
from numbind.registry.services import log_record
from numbind.registry.storage import orders
from numbind.registry.storage.db import Session
from numbind.registry.storage.models import LogLeafRow, LogNodeRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import AckOutcome, PlatformClient
from numbind.sdk.channel import secure_channel
from numbind.sdk.log import LogClient, LogProofError
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import carriers_pb2, carriers_pb2_grpc, common_pb2
from sqlalchemy import select

from tests.e2e._cli import cli
from tests.e2e._log import PHONE, report_more, seed, witness_for
from tests.e2e._story import days_ago, publish, tokenize, ts


async def _ack_all(bundle: Bundle, policy: WitnessPolicy | None = None) -> tuple[int, list[str]]:
    """Ack every pending order UNBOUND through the platform SDK; (orders proved, ids)."""
    ids: list[str] = []
    async with PlatformClient(bundle, log_trust=policy) as client:
        async for event in client.events(follow=False):
            await event.ack(AckOutcome.UNBOUND)
            ids.append(event.order_id)
        assert client.feed is not None
        return client.feed.orders_proved, ids


async def test_reissue_with_proofs_end_to_end(
    database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A member witnesses the log (its key configured at the hub); each platform's policy
    # asks for that witness's cosignature.
    member = load_or_create_witness(tmp_path / "member")
    async with running_registry(
        tmp_path / "hub", database_url=database_url, log_witnesses=member.verifier.vkey()
    ) as reg:
        await _story(reg, capsys, tmp_path)


async def _story(reg: RunningRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cm, platforms, summary = await seed(reg)
    # The carrier SDK proved both events logged before report() returned.
    assert len(summary.leaf_indices) == 2 and summary.orders_created == 3
    (rid,) = summary.revocation_ids
    witness = witness_for(reg, tmp_path / "member")
    cosig = await _witness_round(reg, witness)
    assert cosig.witness == "numbind.local/witness/self"
    policy = WitnessPolicy.all_of([load_or_create_witness(tmp_path / "member").verifier])
    order_ids = []
    for p in platforms:
        proved, ids = await _ack_all(p, policy)
        assert proved == 1 and len(ids) == 1  # its one order, proved before it was acked
        order_ids += ids

    rc, out, err = await cli(
        capsys,
        "log",
        "prove",
        "--bundle",
        cm.directory,
        "--revocation",
        rid,
        "--json",
        "--out",
        tmp_path / "proof.json",
    )
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["verified"] and [x["kind"] for x in shown["leaves"]].count("order") == 3
    assert [x["kind"] for x in shown["leaves"]].count("ack") == 3
    # The downloadable proof re-checks offline: opening -> leaf -> inclusion -> checkpoint.
    proofs = json.loads((tmp_path / "proof.json").read_text())
    trigger = next(p for p in proofs if p["opening"] and '"t":"revocation"' in p["opening"]["body"])
    Opening(
        0, bytes.fromhex(trigger["opening"]["salt"]), trigger["opening"]["body"].encode()
    ).check(bytes.fromhex(trigger["leaf"]))

    rc, out, err = await cli(
        capsys, "log", "prove", "--bundle", platforms[0].directory, "--order", order_ids[0]
    )
    assert rc == 0 and "verified: 2 leaves" in out, err  # the order and its outcome
    assert "each opening checked" in out, out
    # Another platform's order is included, but this bundle cannot open it: said, where it
    # used to print "verified ..., 0 opened and checked".
    rc, out, err = await cli(
        capsys, "log", "prove", "--bundle", platforms[1].directory, "--order", order_ids[0]
    )
    assert rc == 0 and "not opened" in out and "unchecked" in out, out
    rc, out, err = await cli(
        capsys, "log", "prove", "--bundle", cm.directory, "--event", summary.leaf_indices[1]
    )
    assert rc == 0 and "verified: 1 leaf included" in out and "its opening checked" in out, out
    # A leaf past the end of the log is refused as such, not waited for as a quorum.
    rc, out, err = await cli(
        capsys, "log", "prove", "--bundle", cm.directory, "--event", str(10**8)
    )
    assert rc != 0 and "log missing: leaf 100000000 is past the end of the log" in err, err
    rc, out, err = await cli(capsys, "log", "checkpoint", "--bundle", cm.directory, "--json")
    assert rc == 0 and json.loads(out)["origin"] == "numbind.local/log"
    rc, out, err = await cli(capsys, "log", "monitor", "--bundle", reg.admin_bundle.directory)
    assert rc == 0 and "ok: every rule holds" in out, out
    # Another platform cannot open the carrier's or others' entries: the monitor from its
    # bundle opens only its own order and ack.
    rc, out, err = await cli(capsys, "log", "monitor", "--bundle", platforms[1].directory, "--json")
    assert rc == 0 and json.loads(out)["opened"] == 2


async def _witness_round(reg: RunningRegistry, witness: Witness) -> Cosignature:
    from numbind.registry.federation.witness import GrpcLogSource

    async with secure_channel(reg.admin_bundle) as channel:
        return await witness.witness(GrpcLogSource(channel))


async def test_monitor_fails_when_an_order_was_silently_dropped(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = log_record.order_leaves

    def drop_last_order(
        names: Mapping[int, str],
        revocation_id: str,
        created: Sequence[tuple[str, orders.NewOrder]],
    ) -> list[logged.LogLeaf]:
        # The trigger still commits to every order.
        return honest(names, revocation_id, created)[:-1]

    # Order leaves are logged with their orders (chunk by chunk for a report), the trigger
    # after the last: dropping one leaf of the orders' is what a registry could hide.
    monkeypatch.setattr(log_record, "order_leaves", drop_last_order)
    cm, platforms, summary = await seed(registry)
    rc, out, err = await cli(capsys, "log", "monitor", "--bundle", registry.admin_bundle.directory)
    assert rc == 1
    assert "commits to 3 orders, the log holds 2 of them (an order silently dropped" in out
    # The platform whose order was not logged refuses to ack it: nothing proves it.
    with pytest.raises(LogProofError, match="names no log leaf"):
        await _ack_all(platforms[-1])
    # And the carrier's proof of its revocation fails on the same gap.
    rc, out, err = await cli(
        capsys, "log", "prove", "--bundle", cm.directory, "--revocation", summary.revocation_ids[0]
    )
    assert rc == 1 and "commits to 3 orders" in err


async def test_leaves_and_checkpoints_carry_no_token_account_or_subject(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    cm, platforms, _ = await seed(registry)
    await report_more(cm, 3)
    async with secure_channel(platforms[0]) as channel:
        tok = Tokenizer(channel)
        (token,) = await tok.tokenize([PHONE])
        tok.close()
        log = LogClient(channel)
        cp = await log.checkpoint()
        served = b"".join(await log.leaves(0, cp.size))

    def nodes(s: Session) -> bytes:
        return b"".join(s.scalars(select(LogNodeRow.hash))) + b"".join(
            s.scalars(select(LogLeafRow.commitment))
        )

    stored = registry.registry.db.transact(nodes, write=False)
    secrets = [token.token, token.token.hex().encode(), PHONE.encode(), PHONE[3:].encode()]
    secrets += [f"old-holder-{i}".encode() for i in range(3)]
    secrets += [f"old-holder-{i}".encode().hex().encode() for i in range(3)]
    for blob in (served, stored, cp.signed):
        for secret in secrets:
            assert secret not in blob
    assert len(served) == 32 * cp.size  # commitments only

    # Openings, the one place entries are in the clear, name no account_ref either.
    def bodies(s: Session) -> bytes:
        return b"".join(s.scalars(select(LogLeafRow.body)))

    opened = registry.registry.db.transact(bodies, write=False)
    assert all(f"old-holder-{i}".encode() not in opened for i in range(3))
    assert b"account" not in opened and b"subject" not in opened


async def test_a_retried_report_answers_its_leaves_again_and_logs_nothing_twice(
    registry: RunningRegistry,
) -> None:
    cm = registry.add_carrier("cm")
    token = await tokenize(cm, PHONE)
    request = carriers_pb2.ReportLifecycleRequest(
        request_id="report-1",
        events=[
            carriers_pb2.LifecycleEvent(
                token=common_pb2.Token(key_id=token.key_id, value=token.token),
                kind=carriers_pb2.LIFECYCLE_KIND_ISSUED,
                effective_at=ts(days_ago(3)),
            )
        ],
    )
    async with secure_channel(cm) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        first = await stub.ReportLifecycle(request)
        size = (await LogClient(channel).checkpoint()).size
        again = await stub.ReportLifecycle(request)
        assert list(again.leaf_indices) == list(first.leaf_indices) == [size - 1]
        assert (await LogClient(channel).checkpoint()).size == size


async def test_a_binding_revoked_on_arrival_is_logged_and_proved_before_its_ack(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(registry)
    late = registry.add_platform("late")
    token = await tokenize(late, PHONE)
    await publish(late, token, [(b"stale-account", days_ago(300))])  # before the reissue
    proved, ids = await _ack_all(late)
    assert proved == 1 and len(ids) == 1
    rc, out, _ = await cli(capsys, "log", "monitor", "--bundle", registry.admin_bundle.directory)
    assert rc == 0 and "ok: every rule holds" in out, out


async def test_proofs_of_leaves_a_verified_checkpoint_covers_fetch_no_new_one(
    registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ack batch proves its orders: a checkpoint already verified that covers them
    is reused, and an empty batch asks nothing."""
    cm, platforms, _ = await seed(registry)
    async with secure_channel(platforms[0]) as channel:
        log = LogClient(channel)
        stub = log._stub
        fetched = 0
        real = stub.GetCheckpoint

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal fetched
            fetched += 1
            return real(*args, **kwargs)

        # A plain function in the stub's multi-callable slot: set it as the attribute it is.
        monkeypatch.setattr(stub, "GetCheckpoint", counting)
        assert await log.prove([]) == [] and fetched == 0
        cp = await log.checkpoint()
        assert fetched == 1 and cp.size >= 2
        first = await log.prove([0, cp.size - 1])
        again = await log.prove([cp.size - 1])
        assert fetched == 1
        assert again[0].leaf == first[1].leaf and again[0].checkpoint is cp
        await report_more(cm, 1)  # a leaf beyond it: a newer checkpoint is fetched
        for _ in range(100):
            if (await LogClient(channel).checkpoint()).size > cp.size:
                break
            await asyncio.sleep(0.1)
        newer = await log.prove([cp.size])
        assert fetched >= 2 and newer[0].checkpoint.size > cp.size
