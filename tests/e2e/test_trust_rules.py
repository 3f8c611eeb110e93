"""DESIGN.md's trust rules, each over real gRPC: porting moves authority and revokes
nothing; every attestation failure has its own status and changes nothing; platforms are
isolated from each other's feeds."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import grpc
import pytest
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk import AckOutcome, EventFeed, Lifecycle, LifecycleReport, errors
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import TokenResult
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
)

from tests.e2e._story import carrier, days_ago, publish, tokenize

PHONE = "+8613800138000"


async def _stats(reg: RunningRegistry) -> admin_pb2.GetStatsResponse:
    async with secure_channel(reg.admin_bundle) as channel:
        return await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())


async def _pending(bundle: Bundle) -> list[int]:
    async with secure_channel(bundle) as channel:
        return [e.seq async for e in EventFeed(channel, after_seq=0).events(follow=False)]


async def test_porting_moves_authority_and_revokes_nothing(registry: RunningRegistry) -> None:
    cm, cu = registry.add_carrier("cm"), registry.add_carrier("cu")
    p1, p2 = registry.add_platform("p1"), registry.add_platform("p2")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"a", days_ago(200))])
    await publish(p2, token, [(b"b", days_ago(100))])
    async with carrier(cm) as a, carrier(cu) as b:
        await a.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(300))])
        # Another carrier cannot take the number without a port.
        with pytest.raises(errors.PermissionDenied, match=r"^event 1: token: carrier cu") as err:
            await b.report([LifecycleReport(PHONE, Lifecycle.PORTED_IN, days_ago(20))])
        assert (err.value.position, err.value.item) == (1, "event")
        out = await a.report([LifecycleReport(PHONE, Lifecycle.PORTED_OUT, days_ago(10))])
        into = await b.report([LifecycleReport(PHONE, Lifecycle.PORTED_IN, days_ago(9))])
        assert (out.orders_created, out.notices_created) == (0, 0)
        assert (into.orders_created, into.notices_created, into.revocation_ids) == (0, 0, [])
        assert await _pending(p1) == [] and await _pending(p2) == []
        # Only the new carrier may report or attest now; a batch with one foreign event
        # writes nothing at all (its other, valid event included).
        with pytest.raises(errors.PermissionDenied, match=r"^event 2: .*nothing from this batch"):
            await a.report(
                [
                    LifecycleReport("+8613900000001", Lifecycle.ISSUED, days_ago(5)),
                    LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(1)),
                ]
            )
        # Never reported (the batch above wrote nothing): the answer says what to do, where
        # it used to read as if another carrier served the number.
        with pytest.raises(
            errors.PermissionDenied, match=r"not the current carrier.*has not reported it"
        ):
            await a.query("s", [("+8613900000001", days_ago(5))])
        with pytest.raises(errors.PermissionDenied, match="not the current carrier"):
            await a.query("s", [(PHONE, days_ago(300))])
        (view,) = await b.query("s", [(PHONE, days_ago(300))])
        # The holder did not change, so the tenure did not either: both bindings are theirs.
        assert {(p.platform_id, p.pre_tenure) for p in view.platforms} == {
            ("p1", False),
            ("p2", False),
        }
    stats = await _stats(registry)
    assert stats.active_bindings == 2 and stats.orders_pending == 0


def _signed(
    key_bundle: Bundle,
    token: TokenResult,
    *,
    carrier_id: str | None = None,
    purpose: int = attestation.Purpose.QUERY,
    now_us: int | None = None,
    nonce: bytes | None = None,
    lifetime: int = 300,
) -> holders_pb2.SignedAttestation:
    data, sig = attestation.issue(
        key_bundle.attestation_signing_key(),
        carrier_id=carrier_id or key_bundle.principal_id,
        token=token.token,
        key_id=token.key_id,
        subject="sub",
        tenure_start_us=int(days_ago(30).timestamp() * 1e6),
        purpose=purpose,
        now_us=now_us,
        nonce=nonce,
        lifetime_seconds=lifetime,
    )
    return holders_pb2.SignedAttestation(attestation=data, signature=sig)


async def test_every_attestation_failure_is_refused_and_changes_nothing(
    registry: RunningRegistry,
) -> None:
    cm, cu = registry.add_carrier("cm"), registry.add_carrier("cu")
    p1 = registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    other = await tokenize(p1, "+8613900000002")
    await publish(p1, token, [(b"old", days_ago(60))])
    async with carrier(cm) as a, carrier(cu) as b:
        await a.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
        await b.report([LifecycleReport("+8613900000002", Lifecycle.ISSUED, days_ago(30))])
    nonce = os.urandom(32)
    forged = _signed(cm, token, nonce=nonce)
    forged.signature = _signed(cu, token, carrier_id="cm").signature
    old = int((datetime.now().timestamp() - 1200) * 1e6)
    cases = [
        ("bad signature", cm, forged, grpc.StatusCode.UNAUTHENTICATED, "does not verify"),
        (
            "wrong carrier",
            cu,
            _signed(cu, token, carrier_id="cm"),
            grpc.StatusCode.PERMISSION_DENIED,
            "attestation.carrier_id",
        ),
        (
            "expired",
            cm,
            _signed(cm, token, now_us=old, nonce=nonce),
            grpc.StatusCode.FAILED_PRECONDITION,
            "expired",
        ),
        (
            "wrong purpose",
            cm,
            _signed(cm, token, purpose=attestation.Purpose.QUERY, nonce=nonce),
            grpc.StatusCode.PERMISSION_DENIED,
            "purpose",
        ),
        (
            "foreign token",
            cm,
            _signed(cm, other, purpose=attestation.Purpose.REVOKE, nonce=nonce),
            grpc.StatusCode.PERMISSION_DENIED,
            "not the current carrier",
        ),
    ]
    for name, caller, signed, code, needle in cases:
        async with secure_channel(caller) as channel:
            stub = holders_pb2_grpc.HoldersStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RequestRevocation(
                    holders_pb2.RequestRevocationRequest(
                        request_id="r-" + name.replace(" ", "-"),
                        attestation=signed,
                        scope=holders_pb2.REVOCATION_SCOPE_ALL,
                    )
                )
        assert err.value.code() == code, name
        assert needle in (err.value.details() or ""), (name, err.value.details())
    stats = await _stats(registry)
    assert stats.orders_pending == 0 and stats.active_bindings == 1
    # None of the refused attempts consumed the nonce they carried: it still works once ...
    good = _signed(cm, token, purpose=attestation.Purpose.REVOKE, nonce=nonce)
    async with secure_channel(cm) as channel:
        stub = holders_pb2_grpc.HoldersStub(channel)
        ok = await stub.RequestRevocation(
            holders_pb2.RequestRevocationRequest(
                request_id="r-good", attestation=good, scope=holders_pb2.REVOCATION_SCOPE_ALL
            )
        )
        assert ok.orders == 1
        # ... and only once: the same attestation under a new request id is a replay.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestRevocation(
                holders_pb2.RequestRevocationRequest(
                    request_id="r-again", attestation=good, scope=holders_pb2.REVOCATION_SCOPE_ALL
                )
            )
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "already used" in (err.value.details() or "")
        # A retry of the first request (same id) is answered as the first time.
        again = await stub.RequestRevocation(
            holders_pb2.RequestRevocationRequest(
                request_id="r-good", attestation=good, scope=holders_pb2.REVOCATION_SCOPE_ALL
            )
        )
        assert again.revocation_id == ok.revocation_id
        # So is a resubmission signed afresh (new nonce): same number, same scope.
        fresh = _signed(cm, token, purpose=attestation.Purpose.REVOKE)
        resent = await stub.RequestRevocation(
            holders_pb2.RequestRevocationRequest(
                request_id="r-good", attestation=fresh, scope=holders_pb2.REVOCATION_SCOPE_ALL
            )
        )
        assert resent.revocation_id == ok.revocation_id
        # The same id asking for something else is a conflict, not a second revocation.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RequestRevocation(
                holders_pb2.RequestRevocationRequest(
                    request_id="r-good",
                    attestation=_signed(cm, token, purpose=attestation.Purpose.REVOKE),
                    scope=holders_pb2.REVOCATION_SCOPE_ALL_PRE_TENURE,
                )
            )
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # Nobody can follow a revocation they did not request.
    async with secure_channel(cu) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await holders_pb2_grpc.HoldersStub(channel).GetRevocation(
                holders_pb2.GetRevocationRequest(revocation_id=ok.revocation_id)
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await _stats(registry)).orders_pending == 1


async def test_platforms_cannot_read_or_ack_each_others_feed(registry: RunningRegistry) -> None:
    cm = registry.add_carrier("cm")
    p1, p2 = registry.add_platform("p1"), registry.add_platform("p2")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"secret-account", days_ago(60))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
    async with secure_channel(p1) as channel:
        events = [e async for e in EventFeed(channel, after_seq=0).events(follow=False)]
    assert len(events) == 1
    assert await _pending(p2) == []
    async with secure_channel(p2) as channel:
        feed = EventFeed(channel, after_seq=0)
        with pytest.raises(errors.NotFound, match="no order"):
            await feed.ack([(events[0], AckOutcome.UNBOUND, "")])
    # The order is still open for its owner.
    stats = await _stats(registry)
    assert stats.orders_delivered + stats.orders_pending == 1


async def test_heartbeats_when_idle_carry_the_head(registry: RunningRegistry) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"acct", days_ago(60))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
    async with secure_channel(p1) as channel:
        call = platforms_pb2_grpc.PlatformsStub(channel).StreamEvents(
            platforms_pb2.StreamEventsRequest(after_seq=1, heartbeat_seconds=1)
        )
        # Caught up from the start: only heartbeats, about one a second, naming the head.
        for _ in range(2):
            item = await asyncio.wait_for(call.read(), 2.5)
            # read() may also return EOF (an untyped sentinel): a heartbeat is a response.
            assert isinstance(item, platforms_pb2.StreamEventsResponse)
            assert item.HasField("heartbeat") and item.heartbeat.head_seq == 1
        call.cancel()


async def test_out_of_order_events_are_superseded_and_trigger_nothing(
    registry: RunningRegistry,
) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"old", days_ago(200))])
    async with carrier(cm) as c:
        s1 = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
        # An older deactivation arriving late changes nothing and notifies nobody.
        s2 = await c.report([LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(100))])
        assert (s1.applied, s1.orders_created) == (1, 1)
        assert (s2.applied, s2.superseded, s2.notices_created, s2.orders_created) == (0, 1, 0, 0)
        (view,) = await c.query("s", [(PHONE, days_ago(50))])
        assert view.tenure_start is not None
        assert abs((view.tenure_start - days_ago(10)).total_seconds()) < 1
    assert await _pending(p1) == [1]  # only the reissue's order


async def test_report_retry_answers_as_first_and_reuse_is_refused(
    registry: RunningRegistry,
) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"old", days_ago(200))])
    event = carriers_pb2.LifecycleEvent(
        token=common_pb2.Token(key_id=token.key_id, value=token.token),
        kind=carriers_pb2.LIFECYCLE_KIND_REISSUED,
    )
    event.effective_at.FromDatetime(days_ago(1))
    request = carriers_pb2.ReportLifecycleRequest(request_id="lc-1", events=[event])
    async with secure_channel(cm) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        first = await stub.ReportLifecycle(request)
        again = await stub.ReportLifecycle(request)
        assert first == again and first.orders_created == 1
        request.events[0].kind = carriers_pb2.LIFECYCLE_KIND_DEACTIVATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ReportLifecycle(request)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "lc-1" in (err.value.details() or "")
    assert await _pending(p1) == [1]  # the retry created no second order


async def test_stream_pushes_new_events_without_polling_delay(registry: RunningRegistry) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"acct", days_ago(60))])
    async with secure_channel(p1) as channel:
        feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60)
        stream = feed.events().__aiter__()
        waiter = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)  # the stream is idle, waiting (heartbeat is 60 s away)
        loop = asyncio.get_running_loop()
        async with carrier(cm) as c:
            started = loop.time()
            await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
        event = await asyncio.wait_for(waiter, 5)
        assert loop.time() - started < 2.0
        assert event.account_ref == b"acct"
        await stream.aclose()  # type: ignore[attr-defined]
