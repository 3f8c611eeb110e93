"""Two registries on one PostgreSQL behave as one: what one commits reaches the other
through LISTEN/NOTIFY at once (feed wake-ups, suspensions), and quotas are one bucket.

Both registries run in this process with heartbeats and polls of 30-60 s, so anything
that arrives within a few seconds can only have come by notification. The three-process
test behind HAProxy is tests/e2e/test_load_balanced.py."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.registry.api.server import RegistryServer
from numbind.registry.app import Registry
from numbind.registry.config import QuotaSettings
from numbind.registry.domain.types import BindingState
from numbind.registry.storage.db import Database
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.v1 import platforms_pb2, platforms_pb2_grpc, tokens_pb2, tokens_pb2_grpc
from sqlalchemy import text

from tests.conftest import require_postgres
from tests.e2e._story import carrier, days_ago, publish, tokenize

pytestmark = pytest.mark.postgres
PHONE = "+8613800138000"
SLOW = {"change_poll_seconds": 30.0, "heartbeat_seconds": 60.0}


@pytest.fixture
def pg_url() -> str:
    return require_postgres()


@dataclasses.dataclass
class Pair:
    a: RunningRegistry
    b: RegistryServer
    b_port: int

    def on_b(self, bundle: Bundle) -> Bundle:
        return dataclasses.replace(bundle, registry=f"127.0.0.1:{self.b_port}")


async def _pair(tmp_path: Path, url: str, **overrides: object) -> AsyncIterator[Pair]:
    async with running_registry(tmp_path / "data", database_url=url, **overrides) as a:
        b = RegistryServer(Registry.open(a.settings, migrate_schema=False))
        port = await b.start()
        try:
            for reg in (a.registry, b.registry):
                assert await reg.changes.wait_listening(10)
            yield Pair(a, b, port)
        finally:
            await b.stop()


async def test_an_event_committed_through_a_wakes_a_stream_on_b(
    tmp_path: Path, pg_url: str
) -> None:
    async for pair in _pair(tmp_path, pg_url, **SLOW):
        cm, p1 = pair.a.add_carrier("cm"), pair.a.add_platform("p1")
        token = await tokenize(p1, PHONE)
        await publish(p1, token, [(b"acct", days_ago(200))])
        async with secure_channel(pair.on_b(p1)) as channel:
            feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60).events()
            first = asyncio.ensure_future(anext(feed))
            await asyncio.sleep(0.5)  # the stream on B is waiting now
            heard = pair.b.registry.changes.heard
            async with carrier(cm) as c:  # through A
                await c.report([LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(1))])
            event = await asyncio.wait_for(first, 10)  # not the 60 s heartbeat
            assert event.seq == 1
            assert pair.b.registry.changes.heard > heard
            await feed.aclose()


async def test_a_suspension_through_a_is_seen_by_b_at_once(tmp_path: Path, pg_url: str) -> None:
    async for pair in _pair(tmp_path, pg_url, **SLOW):
        p1 = pair.a.add_platform("p1")
        async with secure_channel(pair.on_b(p1)) as channel:
            stub = tokens_pb2_grpc.TokensStub(channel)
            await stub.GetKeys(tokens_pb2.GetKeysRequest())  # B caches p1 for 30 s
            await pair.a.registry.admin.set_suspended("platform", "p1", True)
            await asyncio.sleep(1.0)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetKeys(tokens_pb2.GetKeysRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_one_quota_bucket_across_registries(tmp_path: Path, pg_url: str) -> None:
    quota = QuotaSettings(rate_per_second=1.0, burst=200, daily_cap=10_000)
    async for pair in _pair(tmp_path, pg_url, quota=quota):
        p1 = pair.a.add_platform("p1")
        _, element = voprf.blind(PHONE.encode(), voprf.MODE_VOPRF)
        request = tokens_pb2.EvaluateRequest(blinded_elements=[element] * 150)
        async with secure_channel(p1) as on_a, secure_channel(pair.on_b(p1)) as on_b:
            await tokens_pb2_grpc.TokensStub(on_a).Evaluate(request)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await tokens_pb2_grpc.TokensStub(on_b).Evaluate(request)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert pair.b.registry.quota_gate.refusals == {("platform", "p1"): 1}


async def test_a_lost_notification_is_made_good_by_the_poll(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every notification lost, the once-per-poll read of the watched feed heads
    still wakes B's stream, well before its 60 s heartbeat."""
    from numbind.registry.storage import signals

    monkeypatch.setattr(signals, "announce", lambda *a, **k: None)
    async for pair in _pair(tmp_path, pg_url, change_poll_seconds=0.3, heartbeat_seconds=60.0):
        cm, p1 = pair.a.add_carrier("cm"), pair.a.add_platform("p1")
        token = await tokenize(p1, PHONE)
        await publish(p1, token, [(b"acct", days_ago(200))])
        async with secure_channel(pair.on_b(p1)) as channel:
            feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60).events()
            first = asyncio.ensure_future(anext(feed))
            await _until_waiting(pair.b)
            async with carrier(cm) as c:
                await c.report([LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(1))])
            event = await asyncio.wait_for(first, 30)
            assert event.seq == 1
            assert pair.b.registry.changes.poll_wakes >= 1
            assert pair.b.registry.changes.heard == 0
            await feed.aclose()


async def test_a_rotation_through_a_makes_b_reload_its_keys(tmp_path: Path, pg_url: str) -> None:
    import uuid

    from numbind.registry.services.tokens import KEYS_MAX_AGE_SECONDS
    from numbind.v1 import admin_pb2, admin_pb2_grpc

    async for pair in _pair(tmp_path, pg_url, **SLOW):
        p1 = pair.a.add_platform("p1")
        async with secure_channel(pair.on_b(p1)) as channel:
            stub = tokens_pb2_grpc.TokensStub(channel)
            before = (await stub.GetKeys(tokens_pb2.GetKeysRequest())).active_key_id
            b = pair.b.registry
            assert not b.keys.older_than(KEYS_MAX_AGE_SECONDS)
            heard = b.changes.heard
            async with secure_channel(pair.a.admin_bundle) as admin:
                await admin_pb2_grpc.AdminStub(admin).RotateKey(
                    admin_pb2.RotateKeyRequest(request_id=uuid.uuid4().hex)
                )
            for _ in range(500):
                if b.changes.heard > heard:
                    break
                await asyncio.sleep(0.02)
            # Heard: B's next call reloads the keys instead of trusting them for 5 s.
            assert b.keys.older_than(KEYS_MAX_AGE_SECONDS)
            after = (await stub.GetKeys(tokens_pb2.GetKeysRequest())).active_key_id
            assert after != before


async def test_without_notify_no_process_announces_and_the_poll_carries_events(
    tmp_path: Path, pg_url: str
) -> None:
    """`change_notify=False` (an engine without LISTEN/NOTIFY): no process LISTENs, no
    transaction calls pg_notify, and B's stream still gets A's event from the poll."""
    import psycopg
    from numbind.registry.storage import signals

    spy = await psycopg.AsyncConnection.connect(signals.libpq_url(pg_url), autocommit=True)
    await spy.execute(f"LISTEN {signals.CHANNEL}")
    heard: list[str] = []
    spy.add_notify_handler(lambda n: heard.append(n.payload))
    a_settings = {"change_poll_seconds": 0.3, "heartbeat_seconds": 60.0, "change_notify": False}
    try:
        async with running_registry(tmp_path / "data", database_url=pg_url, **a_settings) as a:
            b = RegistryServer(Registry.open(a.settings, migrate_schema=False))
            port = await b.start()
            try:
                assert not await b.registry.changes.wait_listening(0.5)
                cm, p1 = a.add_carrier("cm"), a.add_platform("p1")
                token = await tokenize(p1, PHONE)
                await publish(p1, token, [(b"acct", days_ago(200))])
                on_b = dataclasses.replace(p1, registry=f"127.0.0.1:{port}")
                async with secure_channel(on_b) as channel:
                    feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60).events()
                    first = asyncio.ensure_future(anext(feed))
                    await _until_waiting(b)
                    async with carrier(cm) as c:
                        await c.report([LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(1))])
                    event = await asyncio.wait_for(first, 30)
                    assert event.seq == 1
                    assert b.registry.changes.poll_wakes >= 1
                    await feed.aclose()
            finally:
                await b.stop()
        # Give any notification time to arrive on the spy's connection.
        await spy.execute("SELECT 1")
        await asyncio.sleep(0.2)
        await spy.execute("SELECT 1")
        assert heard == []
    finally:
        await spy.close()


async def _until_waiting(server: RegistryServer) -> None:
    """Until a stream waits on the server for new events, so that the event a test reports
    next reaches it by a wake-up (notification or poll), not by its first read."""
    for _ in range(300):
        if server.registry.changes.watched:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no stream ever waited")


async def test_a_second_process_cannot_take_the_port_another_serves(
    tmp_path: Path, pg_url: str
) -> None:
    """gRPC's default SO_REUSEPORT let a second registry bind beside the first, each then
    answering about half the connections to that address with its own certificate."""
    async with running_registry(tmp_path / "data", database_url=pg_url) as a:
        settings = dataclasses.replace(a.settings, listen=a.address)
        b = RegistryServer(Registry.open(settings, migrate_schema=False))
        try:
            with pytest.raises(OSError, match=f"--listen {a.address}: cannot bind"):
                await b.start()
        finally:
            await b.stop()


def _order_rows(db: Database) -> list[tuple[str, int, int, int, int]]:
    """(order id, its state, outcome, its binding's state, ack leaves of it), by id."""
    rows = db.transact(
        lambda s: s.execute(
            text(
                "SELECT o.id, o.state, o.outcome, b.state, (SELECT count(*) FROM log_leaves"
                " AS l WHERE l.kind = 'ack' AND l.ref = o.id) FROM orders AS o"
                " JOIN bindings AS b ON b.pk = o.binding_pk ORDER BY o.id"
            )
        ).all(),
        write=False,
    )
    return [(str(i), int(s), int(o), int(b), int(n)) for i, s, o, b, n in rows]


async def _ack(
    stub: platforms_pb2_grpc.PlatformsAsyncStub,
    batch: list[str],
    outcome: platforms_pb2.AckOutcome.ValueType,
) -> str:
    reason = "still in use" if outcome == platforms_pb2.ACK_OUTCOME_REJECTED else ""
    request = platforms_pb2.AckEventsRequest(
        request_id=uuid.uuid4().hex,
        acks=[platforms_pb2.Ack(order_id=i, outcome=outcome, reason=reason) for i in batch],
    )
    try:
        got = await stub.AckEvents(request, timeout=30)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return f"recorded {got.recorded} duplicate {got.duplicate}"


@pytest.mark.parametrize("streamed_on_a", [False, True])
async def test_two_acks_of_the_same_orders_at_once_are_judged_one_after_the_other(
    tmp_path: Path, pg_url: str, streamed_on_a: bool
) -> None:
    """Acks by order id (the process did not stream them) read the orders unlocked and
    wrote them unconditionally: two overlapping acks were both recorded, each with its
    log leaf, and the binding followed whichever wrote last. With the orders streamed on
    A, A's acks take the other path (found and written in one statement) and B's this one."""
    per, rounds = 3, 4
    async for pair in _pair(tmp_path, pg_url, **SLOW):
        cm, p1 = pair.a.add_carrier("cm"), pair.a.add_platform("p1")
        token = await tokenize(p1, PHONE)
        accounts = [(f"acct-{i}".encode(), days_ago(200)) for i in range(2 * per * rounds)]
        await publish(p1, token, accounts)
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
        for _ in range(100):  # the orders are made after the report, chunk by chunk
            ids = [row[0] for row in await asyncio.to_thread(_order_rows, pair.a.registry.db)]
            if len(ids) == len(accounts):
                break
            await asyncio.sleep(0.2)
        assert len(ids) == len(accounts)
        if streamed_on_a:  # A learns each order's token: its acks find them by (id, token)
            async with secure_channel(p1) as channel:
                feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60).events()
                got = {(await anext(feed)).order_id for _ in ids}
                await feed.aclose()
            assert got == set(ids)
        async with secure_channel(p1) as on_a, secure_channel(pair.on_b(p1)) as on_b:
            stubs = {
                "a": platforms_pb2_grpc.PlatformsStub(on_a),
                "b": platforms_pb2_grpc.PlatformsStub(on_b),
            }
            unbound, rejected = (
                platforms_pb2.ACK_OUTCOME_UNBOUND,
                platforms_pb2.ACK_OUTCOME_REJECTED,
            )
            for r in range(rounds):
                conflicting = ids[2 * r * per : (2 * r + 1) * per]
                said = await asyncio.gather(
                    _ack(stubs["a"], conflicting, unbound), _ack(stubs["b"], conflicting, rejected)
                )
                assert sorted(said) == sorted(
                    ["FAILED_PRECONDITION", f"recorded {per} duplicate 0"]
                )
                same = ids[(2 * r + 1) * per : (2 * r + 2) * per]
                said = await asyncio.gather(
                    _ack(stubs["a"], same, unbound), _ack(stubs["b"], same, unbound)
                )
                assert sorted(said) == [
                    f"recorded 0 duplicate {per}",
                    f"recorded {per} duplicate 0",
                ]
        for order_id, state, outcome, binding, leaves in _order_rows(pair.a.registry.db):
            assert leaves == 1, order_id
            # REJECTED leaves the binding as it was (REVOKING); any other outcome revokes it.
            assert (outcome == rejected) == (binding != BindingState.REVOKED), (order_id, state)


async def test_the_poll_wakes_a_stream_that_began_waiting_just_before_an_append(
    tmp_path: Path, pg_url: str
) -> None:
    """Without notifications, the poll compared each feed head with its own last read: a
    stream that began waiting between an append and the poll's first read of that feed
    was never woken for it, and got the event only at its heartbeat (60 s here). Now the
    head is compared with what the waiting stream has read. Three platforms, three tries."""
    settings = {"change_poll_seconds": 1.5, "heartbeat_seconds": 60.0, "change_notify": False}
    async with running_registry(tmp_path / "data", database_url=pg_url, **settings) as a:
        b = RegistryServer(Registry.open(a.settings, migrate_schema=False))
        port = await b.start()
        try:
            cm = a.add_carrier("cm")
            for i in range(3):
                phone = f"+86139000000{i:02d}"
                p = a.add_platform(f"p{i}")
                await publish(p, await tokenize(p, phone), [(b"acct", days_ago(200))])
                on_b = dataclasses.replace(p, registry=f"127.0.0.1:{port}")
                async with secure_channel(on_b) as channel:
                    feed = EventFeed(channel, after_seq=0, heartbeat_seconds=60).events()
                    first = asyncio.ensure_future(anext(feed))
                    await _until_waiting(b)  # and report at once, before any poll of p{i}
                    async with carrier(cm) as c:
                        await c.report([LifecycleReport(phone, Lifecycle.DEACTIVATED, days_ago(1))])
                    event = await asyncio.wait_for(first, 15)  # a poll or two, not 60 s
                    assert event.seq == 1
                    await feed.aclose()
            assert b.registry.changes.poll_wakes >= 3
        finally:
            await b.stop()
