"""Feed delivery guarantees: redelivery after the visibility timeout, idempotent acks, and
precise refusals for acks that do not fit their order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import BindingState
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import EventKind, FeedEvent, Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.sdk.retry import RetryPolicy
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

from tests.e2e._story import carrier, days_ago, publish, tokenize

PHONE = "+8613800138000"


def _ack(
    order_id: str,
    outcome: platforms_pb2.AckOutcome.ValueType,
    reason: str = "",
    rid: str | None = None,
) -> platforms_pb2.AckEventsRequest:
    return platforms_pb2.AckEventsRequest(
        request_id=rid or uuid.uuid4().hex,
        acks=[platforms_pb2.Ack(order_id=order_id, outcome=outcome, reason=reason)],
    )


async def _deactivated_then_reissued(reg: RunningRegistry) -> Bundle:
    """A platform bound to PHONE, and its carrier's report: the number deactivated, then
    reissued (a notice, then a revocation order, in the platform's feed); the platform."""
    cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(b"acct", days_ago(200))])
    async with carrier(cm) as c:
        await c.report(
            [
                LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(100)),
                LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10)),
            ]
        )
    return p1


async def _notice_then_order(channel: grpc.aio.Channel) -> tuple[str, str]:
    """The ids of `_deactivated_then_reissued`'s two events, as the platform's stream
    sends them (so this process knows their tokens: the acks' routing hints)."""
    seen: list[str] = []

    async def read() -> None:
        async for event in EventFeed(channel, after_seq=0, heartbeat_seconds=5).events():
            seen.append(event.order_id)
            if len(seen) == 2:
                return

    await asyncio.wait_for(read(), 10)
    notice_id, order_id = seen
    return notice_id, order_id


async def test_redelivery_idempotent_acks_and_refusals(tmp_path: Path, database_url: str) -> None:
    async with running_registry(
        tmp_path / "data", visibility_timeout_seconds=1.0, database_url=database_url
    ) as reg:
        p1 = await _deactivated_then_reissued(reg)
        async with secure_channel(p1) as channel:
            # Never acked: the same stream sends both events again after the timeout.
            seen: list[tuple[int, str]] = []
            events = EventFeed(channel, after_seq=0, heartbeat_seconds=5).events()

            async def read() -> None:
                async for event in events:
                    seen.append((event.seq, event.order_id))
                    if len(seen) == 4:
                        return

            await asyncio.wait_for(read(), 10)
            assert [s for s, _ in seen] == [1, 2, 1, 2]
            # Sent again, the orders are marked delivered again: the next resend is a whole
            # timeout away, not the stream's next search for stale deliveries (a quarter).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), 0.6)
            notice_id, order_id = seen[0][1], seen[1][1]
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            bad = [
                (_ack(notice_id, platforms_pb2.ACK_OUTCOME_UNBOUND), "want NOTED"),
                (_ack(order_id, platforms_pb2.ACK_OUTCOME_NOTED), "want UNBOUND"),
                (_ack(order_id, platforms_pb2.ACK_OUTCOME_REJECTED), "acks[0].reason"),
                (_ack(order_id, platforms_pb2.ACK_OUTCOME_UNSPECIFIED), "acks[0].outcome"),
                (_ack("not-an-order", platforms_pb2.ACK_OUTCOME_UNBOUND), "acks[0].order_id"),
            ]
            for request, needle in bad:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.AckEvents(request)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, needle
                assert needle in (err.value.details() or "")
            first = await stub.AckEvents(
                _ack(order_id, platforms_pb2.ACK_OUTCOME_UNBOUND, rid="a1")
            )
            retry = await stub.AckEvents(
                _ack(order_id, platforms_pb2.ACK_OUTCOME_UNBOUND, rid="a1")
            )
            again = await stub.AckEvents(_ack(order_id, platforms_pb2.ACK_OUTCOME_UNBOUND))
            assert (first.recorded, retry.recorded, again.recorded, again.duplicate) == (1, 1, 0, 1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AckEvents(_ack(order_id, platforms_pb2.ACK_OUTCOME_REJECTED, "no"))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "already acked UNBOUND" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AckEvents(_ack(notice_id, platforms_pb2.ACK_OUTCOME_NOTED, rid="a1"))
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "a1" in (err.value.details() or "")


async def test_stop_ends_open_streams_promptly(tmp_path: Path) -> None:
    """Shutdown drains: an idle stream ends within the grace period, not at its heartbeat."""
    async with running_registry(tmp_path / "data") as reg:
        p1 = reg.add_platform("p1")
        async with secure_channel(p1) as channel:
            # No reconnect after the stop.
            feed = EventFeed(channel, after_seq=0, heartbeat_seconds=600, retry=RetryPolicy(0))

            async def follow() -> None:
                async for _ in feed.events():
                    pass

            task = asyncio.ensure_future(follow())
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await reg.server.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            # The stream ended itself: not cancelled by the timeout, not cut off with an error.
            assert task.done() and not task.cancelled() and task.exception() is None
            # Well inside the 5 s grace: the stream ended itself, nothing was cut off.
            assert loop.time() - started < 2.0


async def test_concurrent_acks_sharing_a_transaction_stay_idempotent(tmp_path: Path) -> None:
    """Acks that arrive together share one transaction (storage.group_commit), each in its
    own savepoint: a retry under the same request id gets the first answer, a second
    request for the same order is a duplicate, a refused one changes nothing, and the log
    holds one ack leaf per order."""
    from numbind.registry.storage import log as log_store

    async with running_registry(tmp_path / "data") as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        token = await tokenize(p1, PHONE)
        await publish(p1, token, [(b"acct", days_ago(200))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
        async with secure_channel(p1) as channel:
            feed = EventFeed(channel, after_seq=0, heartbeat_seconds=5)
            (order_id,) = [e.order_id async for e in _first(feed.events(), 1)]
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            unbound = platforms_pb2.ACK_OUTCOME_UNBOUND
            results = await asyncio.gather(
                stub.AckEvents(_ack(order_id, unbound, rid="same")),
                stub.AckEvents(_ack(order_id, unbound, rid="same")),
                stub.AckEvents(_ack(order_id, unbound)),
                stub.AckEvents(_ack(str(uuid.uuid4()), unbound)),
                return_exceptions=True,
            )
        first, retry, other, refused = results
        assert isinstance(first, platforms_pb2.AckEventsResponse)
        assert isinstance(retry, platforms_pb2.AckEventsResponse)
        assert isinstance(other, platforms_pb2.AckEventsResponse)
        # One answer per request id; of the two requests, whichever ran first recorded it.
        assert (retry.recorded, retry.duplicate) == (first.recorded, first.duplicate)
        assert sorted([(first.recorded, first.duplicate), (other.recorded, other.duplicate)]) == [
            (0, 1),
            (1, 0),
        ]
        assert isinstance(refused, grpc.aio.AioRpcError)
        assert refused.code() == grpc.StatusCode.NOT_FOUND
        found = reg.registry.db.transact(
            lambda s: log_store.find(s, "ack", [order_id]), write=False
        )
        assert list(found) == [order_id]


async def _first(events: AsyncIterator[FeedEvent], n: int) -> AsyncIterator[FeedEvent]:
    async for event in events:
        yield event
        n -= 1
        if not n:
            return


async def test_a_stream_woken_by_each_report_searches_for_stale_deliveries_rarely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every commit of new events wakes the stream; the search for deliveries past their
    visibility timeout (a scan of the caller's delivered orders) runs at most once per
    quarter timeout, not on every wake-up. Events still arrive at once."""
    from numbind.registry.storage import feed as feed_store

    searches: list[int] = []
    search = feed_store.stale_deliveries

    def counted(*args: object, **kwargs: object) -> list[feed_store.FeedItem]:
        searches.append(1)
        return search(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_store, "stale_deliveries", counted)
    phones = [f"+86138001381{i:02d}" for i in range(6)]
    async with running_registry(tmp_path / "data", visibility_timeout_seconds=120.0) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        for phone in phones:
            await publish(p1, await tokenize(p1, phone), [(b"acct", days_ago(200))])
        async with secure_channel(p1) as channel, carrier(cm) as c:
            events = EventFeed(channel, after_seq=0, heartbeat_seconds=5).events()
            for phone in phones:
                await c.report([LifecycleReport(phone, Lifecycle.REISSUED, days_ago(10))])
                event = await asyncio.wait_for(events.__anext__(), 10)
                assert event.kind == EventKind.REVOKE
            await events.aclose()
    # One search when the stream first found nothing new; six wake-ups searched nothing.
    assert len(searches) == 1


async def test_an_ack_request_refused_for_one_ack_records_none_of_them(
    tmp_path: Path, database_url: str
) -> None:
    """On PostgreSQL the acks of orders this process streamed are written as their orders
    are found (storage.order_acks.ack_open), before the rest are judged: a refusal of any
    ack must take those writes back with it."""
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        p1 = await _deactivated_then_reissued(reg)
        async with secure_channel(p1) as channel:
            notice_id, order_id = await _notice_then_order(channel)
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            good = platforms_pb2.Ack(order_id=order_id, outcome=platforms_pb2.ACK_OUTCOME_UNBOUND)
            # A notice acked as a revocation order: refused, before or after the good one.
            wrong = platforms_pb2.Ack(order_id=notice_id, outcome=platforms_pb2.ACK_OUTCOME_UNBOUND)
            for acks, index in (([good, wrong], 1), ([wrong, good], 0)):
                request = platforms_pb2.AckEventsRequest(request_id=uuid.uuid4().hex, acks=acks)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.AckEvents(request)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert f"acks[{index}].outcome" in (err.value.details() or "")
            noted = platforms_pb2.Ack(order_id=notice_id, outcome=platforms_pb2.ACK_OUTCOME_NOTED)
            both = platforms_pb2.AckEventsRequest(request_id=uuid.uuid4().hex, acks=[good, noted])
            # Neither order was acked by the refused requests: both are recorded now.
            answer = await stub.AckEvents(both)
            assert (answer.recorded, answer.duplicate) == (2, 0)


async def test_acks_of_streamed_orders_are_written_as_found_and_not_looked_up_again(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an ack of an order this process streamed is found and written by
    `ack_open` alone: the service looks up by id, and writes again, only what it left. On
    SQLite every ack goes the long way. Either way the outcome is the same, and a retry
    under a new request id is found already acked (the long way) and counted a duplicate."""
    from numbind.registry.storage import order_acks

    looked_up: list[list[str]] = []
    rewritten: list[int] = []
    by_id, write = order_acks.orders_by_id, order_acks._write_orders

    def counted_lookup(session: Any, ids: Any, tokens: Any = None) -> Any:
        looked_up.append(list(ids))
        return by_id(session, ids, tokens)

    def counted_write(conn: Any, rows: Any, now: int) -> None:
        rewritten.extend(pk for pk, *_ in rows)
        write(conn, rows, now)

    monkeypatch.setattr(order_acks, "orders_by_id", counted_lookup)
    monkeypatch.setattr(order_acks, "_write_orders", counted_write)
    pg = database_url.startswith("postgresql")
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        p1 = await _deactivated_then_reissued(reg)
        async with secure_channel(p1) as channel:
            notice_id, order_id = await _notice_then_order(channel)
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            acks = [
                platforms_pb2.Ack(order_id=order_id, outcome=platforms_pb2.ACK_OUTCOME_UNBOUND),
                platforms_pb2.Ack(order_id=notice_id, outcome=platforms_pb2.ACK_OUTCOME_NOTED),
            ]
            first = platforms_pb2.AckEventsRequest(request_id=uuid.uuid4().hex, acks=acks)
            answer = await stub.AckEvents(first)
            assert (answer.recorded, answer.duplicate) == (2, 0)
            if pg:
                assert (looked_up, rewritten) == ([], [])
            else:
                assert looked_up == [[order_id, notice_id]]
                assert len(rewritten) == 2
            looked_up.clear()
            rewritten.clear()
            again = platforms_pb2.AckEventsRequest(request_id=uuid.uuid4().hex, acks=acks)
            answer = await stub.AckEvents(again)
            assert (answer.recorded, answer.duplicate) == (0, 2)
            assert (looked_up, rewritten) == ([[order_id, notice_id]], [])
    # The binding followed its order, on the short way too.
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            states = conn.execute(sqlalchemy.text("SELECT state FROM bindings")).scalars().all()
    finally:
        engine.dispose()
    assert states == [int(BindingState.REVOKED)]
