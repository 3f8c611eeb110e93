"""A change of a principal's standing reaches what it already has open (issue 10, finding 1).

Authorisation used to happen once, at call start: a platform suspended while its
StreamEvents was open went on receiving events. Now an open stream re-reads the standing
version at least every second (and at once on this process's own changes), and acks are
checked inside their own transaction. Changes made by the operator's offline commands go
through another Database and AdminService than the server's, exactly as another registry
process on the same store would: they reach the server through the principals table only.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.storage.models import PrincipalRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.v1 import admin_pb2, admin_pb2_grpc, platforms_pb2, platforms_pb2_grpc
from sqlalchemy import update

from tests.e2e._story import carrier, days_ago, publish, tokenize

PHONES = ["+8613800138000", "+8613800138001", "+8613800138002"]
# Generous: the stream must end within about a second; this only bounds a broken run.
BOUND = 15.0


async def _bind(p1: Bundle, phone: str) -> None:
    token = await tokenize(p1, phone)
    await publish(p1, token, [(uuid.uuid4().bytes, days_ago(200))])


async def _reissue(cm: Bundle, phone: str) -> None:
    async with carrier(cm) as c:
        await c.report([LifecycleReport(phone, Lifecycle.REISSUED, days_ago(1))])


async def _revoke(reg: RunningRegistry, cm: Bundle, p1: Bundle, phone: str) -> None:
    await _bind(p1, phone)
    await _reissue(cm, phone)


async def _open_stream(
    stub: platforms_pb2_grpc.PlatformsAsyncStub,
) -> tuple[asyncio.Queue[platforms_pb2.Event | grpc.aio.AioRpcError], asyncio.Task[None]]:
    """A StreamEvents call read in the background: every event, then the error ending it."""
    out: asyncio.Queue[platforms_pb2.Event | grpc.aio.AioRpcError] = asyncio.Queue()

    async def read() -> None:
        call = stub.StreamEvents(platforms_pb2.StreamEventsRequest(heartbeat_seconds=1))
        try:
            async for msg in call:
                for e in msg.events.events:
                    await out.put(e)
        except grpc.aio.AioRpcError as exc:
            await out.put(exc)

    return out, asyncio.create_task(read())


async def _next_event(q: asyncio.Queue[platforms_pb2.Event | grpc.aio.AioRpcError]) -> str:
    item = await asyncio.wait_for(q.get(), BOUND)
    assert isinstance(item, platforms_pb2.Event), item
    return item.order_id


async def _ended(
    q: asyncio.Queue[platforms_pb2.Event | grpc.aio.AioRpcError],
) -> grpc.aio.AioRpcError:
    """The error that ended the stream; fails if an event arrives first."""
    item = await asyncio.wait_for(q.get(), BOUND)
    assert isinstance(item, grpc.aio.AioRpcError), f"event delivered after the change: {item}"
    return item


def _ack(order_id: str) -> platforms_pb2.AckEventsRequest:
    return platforms_pb2.AckEventsRequest(
        request_id=uuid.uuid4().hex,
        acks=[platforms_pb2.Ack(order_id=order_id, outcome=platforms_pb2.ACK_OUTCOME_UNBOUND)],
    )


async def test_suspension_over_rpc_ends_the_open_stream(registry: RunningRegistry) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    await _revoke(registry, cm, p1, PHONES[0])
    await _bind(p1, PHONES[1])
    async with secure_channel(p1) as channel:
        events, task = await _open_stream(platforms_pb2_grpc.PlatformsStub(channel))
        await _next_event(events)
        async with secure_channel(registry.admin_bundle) as admin:
            await admin_pb2_grpc.AdminStub(admin).SetPrincipalSuspended(
                admin_pb2.SetPrincipalSuspendedRequest(
                    role=admin_pb2.PRINCIPAL_ROLE_PLATFORM, principal_id="p1", suspended=True
                )
            )
        # An event that commits after the suspension must never reach the stream.
        await _reissue(cm, PHONES[1])
        err = await _ended(events)
        await task
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "spiffe://numbind/platform/p1 was suspended" in (err.details() or "")


async def test_suspension_by_another_process_ends_stream_and_refuses_acks(
    tmp_path: Path, database_url: str
) -> None:
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        await _revoke(reg, cm, p1, PHONES[0])
        await _bind(p1, PHONES[1])
        async with secure_channel(p1) as channel:
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            events, task = await _open_stream(stub)
            order_id = await _next_event(events)
            # The server's own directory cache still holds p1 as it was.
            await stub.GetDigest(platforms_pb2.GetDigestRequest(bucket_bits=0))
            # Not through the server: its cache and notifier learn nothing of this.
            operator.set_suspended(reg.settings, "platform", "p1", True)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AckEvents(_ack(order_id))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # On PostgreSQL the suspension's NOTIFY may reach the server's directory first,
            # and authentication refuses the call before the ack's own standing check does.
            assert "suspended" in (refused.value.details() or "")
            await _reissue(cm, PHONES[1])
            err = await _ended(events)
            await task
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "was suspended after this call began" in (err.details() or "")


async def test_reissued_certificate_ends_the_old_bundles_stream(
    registry: RunningRegistry,
) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    await _revoke(registry, cm, p1, PHONES[0])
    await _bind(p1, PHONES[2])
    async with secure_channel(p1) as channel:
        events, task = await _open_stream(platforms_pb2_grpc.PlatformsStub(channel))
        await _next_event(events)
        operator.reissue_bundle(
            registry.settings,
            "platform",
            "p1",
            registry.settings.data_dir / "p1-new",
            registry_address=registry.address,
        )
        await _reissue(cm, PHONES[2])
        err = await _ended(events)
        await task
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate replaced" in (err.details() or "")


async def test_a_call_made_just_after_a_resume_elsewhere_is_served(
    tmp_path: Path, database_url: str
) -> None:
    """Suspended and resumed by another process (or the offline command) a moment ago: this
    process's directory cache, up to a second stale, still authenticates a new call under
    the old standing version. The call began after the change, and the platform is in good
    standing on the same certificate, yet its stream was ended ("changed standing ... after
    this call began") and its acks refused."""
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        await _revoke(reg, cm, p1, PHONES[0])
        await _bind(p1, PHONES[1])
        async with secure_channel(p1) as channel:
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            await stub.GetDigest(platforms_pb2.GetDigestRequest(bucket_bits=0))  # cached
            operator.set_suspended(reg.settings, "platform", "p1", True)
            operator.set_suspended(reg.settings, "platform", "p1", False)
            events, task = await _open_stream(stub)
            order_id = await _next_event(events)
            await stub.AckEvents(_ack(order_id))  # before: UNAUTHENTICATED on SQLite
            await asyncio.sleep(1.5)  # past the stream's standing check
            await _reissue(cm, PHONES[1])
            assert await _next_event(events) != order_id  # before: the stream had ended
            task.cancel()


async def test_a_reissue_ends_the_stream_of_a_principal_pinned_to_no_certificate(
    registry: RunningRegistry,
) -> None:
    """A principal registered before migration 0003 has no certificate pinned until its
    first reissue, which pins the new one: its old bundle's open stream must end too, and
    not be served the orders (account refs) that follow."""
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    await _revoke(registry, cm, p1, PHONES[0])
    await _bind(p1, PHONES[2])
    registry.registry.db.transact(
        lambda s: s.execute(
            update(PrincipalRow).where(PrincipalRow.name == "p1").values(cert_sha256=None)
        )
    )
    registry.registry.standing.changed([])  # as an upgraded store's first start: no cache
    async with secure_channel(p1) as channel:
        events, task = await _open_stream(platforms_pb2_grpc.PlatformsStub(channel))
        await _next_event(events)
        operator.reissue_bundle(
            registry.settings, "platform", "p1", registry.settings.data_dir / "p1-new"
        )
        await _reissue(cm, PHONES[2])
        err = await _ended(events)  # the attack review's run: this order was delivered
        await task
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate replaced" in (err.details() or "")


async def test_a_suspension_lifted_a_moment_later_still_ends_an_open_stream(
    registry: RunningRegistry,
) -> None:
    """An operator who suspends a platform to cut its stream cuts it, however soon the
    suspension is lifted (here by the offline command, which the server hears of only
    through the principals table)."""
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    await _revoke(registry, cm, p1, PHONES[0])
    await _bind(p1, PHONES[1])
    async with secure_channel(p1) as channel:
        events, task = await _open_stream(platforms_pb2_grpc.PlatformsStub(channel))
        await _next_event(events)
        operator.set_suspended(registry.settings, "platform", "p1", True)
        operator.set_suspended(registry.settings, "platform", "p1", False)
        await _reissue(cm, PHONES[1])
        err = await _ended(events)
        await task
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
