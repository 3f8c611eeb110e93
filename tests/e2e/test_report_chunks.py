"""A carrier's report commits its triggers; its orders are created afterwards in chunks,
each committed with the local applier's cursor (services.local_apply, issue 14), on SQLite
and PostgreSQL.

Observed without timings: the first orders are in a platform's feed while the report call
still waits for the rest; a crash between chunks resumes exactly once in a restarted
process; two processes applying at once create each order once; a call cancelled by its
deadline leaves the work running and its retry answers as the first would have."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from numbind.cli import holders as holders_cli
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import LifecycleKind, Principal, Token, now_us
from numbind.registry.errors import Unavailable
from numbind.registry.services import log_record
from numbind.registry.services.lifecycle import LifecycleInput, LifecycleService, ReportResult
from numbind.registry.services.local_apply import Chunk, LocalApplier
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import local_apply, orders, principals
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.models import BindingRow, LogLeafRow, OrderRow
from numbind.registry.testing import RunningRegistry
from numbind.sdk import CarrierClient, EventFeed, EventKind, FeedEvent
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc
from sqlalchemy import Row, func, select

from tests.e2e._story import days_ago, ts

NUMBERS = 12
PLATFORMS = 2
PER_PLATFORM = 2  # bindings per number at each platform, all made long before the reissue
ORDERS = NUMBERS * PLATFORMS * PER_PLATFORM
DAY_US = 86_400_000_000
WITHDRAWN = f"p1-old-{NUMBERS - 1}-0".encode()  # at the second platform, last number


@dataclass
class World:
    reg: RunningRegistry
    caller: Principal
    events: list[LifecycleInput]
    platforms: list[Bundle]
    carrier: Bundle

    @property
    def lifecycle(self) -> LifecycleService:
        return self.reg.registry.lifecycle

    @property
    def applier(self) -> LocalApplier:
        applier = self.lifecycle.applier
        assert applier is not None
        return applier


async def _world(reg: RunningRegistry) -> World:
    carrier = reg.add_carrier("cm")
    platforms = [reg.add_platform(f"p{i}") for i in range(PLATFORMS)]
    phones = [f"+8613800{i:06d}" for i in range(NUMBERS)]
    async with secure_channel(platforms[0]) as channel:
        tok = Tokenizer(channel)
        try:
            tokens = await tok.tokenize(phones)
        finally:
            tok.close()
    for i, p in enumerate(platforms):
        async with secure_channel(p) as channel:
            await platforms_pb2_grpc.PlatformsStub(channel).PublishBindings(
                platforms_pb2.PublishBindingsRequest(
                    request_id=uuid.uuid4().hex,
                    bindings=[
                        common_pb2.Binding(
                            token=common_pb2.Token(key_id=t.key_id, value=t.token),
                            account_ref=f"p{i}-old-{n}-{j}".encode(),
                            bound_at=ts(days_ago(400)),
                            kind=common_pb2.BINDING_KIND_LOGIN,
                        )
                        for n, t in enumerate(tokens)
                        for j in range(PER_PLATFORM)
                    ],
                )
            )
    caller = reg.registry.db.transact(lambda s: principals.get_active(s, "carrier", "cm"))
    assert caller is not None
    when = now_us() - 10 * DAY_US
    events = [
        LifecycleInput(Token(t.key_id, t.token), int(LifecycleKind.REISSUED), when) for t in tokens
    ]
    # Several chunks for a small report: 2 events (8 orders), then 4, 4, 2.
    applier = reg.registry.lifecycle.applier
    assert applier is not None
    applier.first_chunk, applier.chunk = 2, 4
    return World(reg, caller, events, platforms, carrier)


async def _report(w: World, service: LifecycleService, request_id: str) -> ReportResult:
    return await service.report(w.caller, request_id, b"body-" + request_id.encode(), w.events)


def _patch_chunks(
    monkeypatch: pytest.MonkeyPatch,
    applier: LocalApplier,
    before: Callable[[int], Awaitable[None]],
) -> None:
    """`before(n)` runs before the applier's n-th chunk (from 1)."""
    real = applier.apply_chunk
    calls = 0

    async def patched(size: int) -> Chunk:
        nonlocal calls
        calls += 1
        await before(calls)
        return await real(size)

    monkeypatch.setattr(applier, "apply_chunk", patched)


def _second_process(w: World) -> tuple[LifecycleService, Database]:
    """Another registry process on the same store: its own engine, key map and notifier."""
    db = Database(w.reg.registry.db.url)
    service = LifecycleService(
        db, TokenMapper(db), FeedNotifier(), w.reg.settings.order_deadline_seconds
    )
    assert service.applier is not None
    service.applier.first_chunk, service.applier.chunk = 2, 4
    return service, db


def _check_exactly_once(w: World, revocation_id: str) -> None:
    """Every binding ordered once, each order in one feed and one log leaf, one trigger."""

    def read(
        s: Session,
    ) -> tuple[Sequence[Row[int, int]], set[str], int | None, Sequence[Row[str, str]]]:
        per_binding = s.execute(
            select(OrderRow.binding_pk, func.count()).group_by(OrderRow.binding_pk)
        ).all()
        ids = set(s.scalars(select(OrderRow.id).where(OrderRow.revocation_id == revocation_id)))
        places = select(OrderRow.platform_pk, OrderRow.feed_seq).distinct().subquery()
        feed = s.scalar(select(func.count()).select_from(places))
        leaves = s.execute(
            select(LogLeafRow.kind, LogLeafRow.ref).where(
                LogLeafRow.kind.in_(("order", "revocation"))
            )
        ).all()
        return per_binding, ids, feed, leaves

    per_binding, ids, feed, leaves = w.reg.registry.db.transact(read, write=False)
    assert len(per_binding) == ORDERS and {n for _, n in per_binding} == {1}
    assert len(ids) == ORDERS and feed == ORDERS
    assert sorted(r for k, r in leaves if k == "order") == sorted(ids)
    assert [r for k, r in leaves if k == "revocation"] == [revocation_id]


async def _first_event(bundle: Bundle, cursor_file: Path) -> FeedEvent:
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor_file)
        async for event in feed.events():
            return event
    raise AssertionError("the stream ended")


async def test_first_orders_reach_a_feed_before_the_report_returns(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    w = await _world(registry_any_store)
    gate = asyncio.Event()

    async def hold_second(n: int) -> None:
        if n == 2:
            await gate.wait()

    _patch_chunks(monkeypatch, w.applier, hold_second)
    report = asyncio.create_task(_report(w, w.lifecycle, "r-first"))
    first = await asyncio.wait_for(_first_event(w.platforms[0], tmp_path / "cur"), 30)
    assert first.kind == EventKind.REVOKE
    assert not report.done()  # the report call still waits for the rest of its orders
    # The revocation while partly applied: progress so far, and not complete.
    view = await w.reg.registry.holders.get_revocation(w.caller, first.revocation_id)
    assert sum(p.orders for p in view.platforms) == 2 * PLATFORMS * PER_PLATFORM
    assert view.orders_pending and view.unavailable == ()
    # The same through the API: the carrier's SDK, and the CLI's --wait, which does not
    # call a revocation settled while its orders are still being created.
    async with CarrierClient(w.carrier) as client:
        status = await client.revocation_status(first.revocation_id)
    assert status.orders_pending and status.unavailable == ()
    assert not holders_cli._settled(status)
    done = replace(status, platforms=[replace(p, state="DONE") for p in status.platforms])
    assert not holders_cli._settled(done) and holders_cli._settled(
        replace(done, orders_pending=False)
    )
    gate.set()
    result = await asyncio.wait_for(report, 60)
    assert (result.applied, result.superseded) == (NUMBERS, 0)
    assert (result.orders_created, result.notices_created) == (ORDERS, 0)
    assert result.revocation_id == first.revocation_id
    assert len(result.leaf_indices) == NUMBERS
    view = await w.reg.registry.holders.get_revocation(w.caller, result.revocation_id)
    assert sum(p.orders for p in view.platforms) == ORDERS and view.unavailable == ()
    assert not view.orders_pending
    _check_exactly_once(w, result.revocation_id)
    # A retry answers exactly as the first call did.
    assert await _report(w, w.lifecycle, "r-first") == result


async def test_a_crash_between_chunks_resumes_once_in_the_next_process(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await _world(registry_any_store)

    async def die_after_two(n: int) -> None:
        if n > 2:  # this process is gone: nothing after its second chunk
            raise RuntimeError("killed between chunks")

    _patch_chunks(monkeypatch, w.applier, die_after_two)
    with pytest.raises(Unavailable, match="same request_id"):
        await asyncio.wait_for(_report(w, w.lifecycle, "r-crash"), 60)
    at = w.reg.registry.db.transact(local_apply.cursor, write=False)
    partial = w.reg.registry.db.transact(
        lambda s: s.scalar(select(func.count()).select_from(OrderRow)), write=False
    )
    assert partial == (2 + 4) * PLATFORMS * PER_PLATFORM  # the two committed chunks
    # The next process: its applier resumes from the cursor on start-up, and the carrier's
    # retry answers the whole report.
    service, db = _second_process(w)
    stopping = asyncio.Event()
    assert service.applier is not None
    runner = asyncio.create_task(service.applier.run(stopping))
    try:
        result = await asyncio.wait_for(_report(w, service, "r-crash"), 60)
    finally:
        stopping.set()
        await runner
        db.close()
    assert at is not None and result.orders_created == ORDERS
    _check_exactly_once(w, result.revocation_id)


async def test_two_processes_applying_at_once_create_each_order_once(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await _world(registry_any_store)
    never = asyncio.Event()

    async def stall(n: int) -> None:  # this process records the report, others apply it
        await never.wait()

    _patch_chunks(monkeypatch, w.applier, stall)
    report = asyncio.create_task(_report(w, w.lifecycle, "r-two"))
    (a, db_a), (b, db_b) = _second_process(w), _second_process(w)
    assert a.applier is not None and b.applier is not None
    chunks: list[Chunk] = []

    def counting(real: Callable[[int], Awaitable[Chunk]]) -> Callable[[int], Awaitable[Chunk]]:
        async def counted(size: int) -> Chunk:
            done = await real(size)
            chunks.append(done)
            return done

        return counted

    for applier in (a.applier, b.applier):
        monkeypatch.setattr(applier, "apply_chunk", counting(applier.apply_chunk))
    try:
        # Both drain until nothing is left, contending for the cursor row chunk by chunk.
        while not report.done():
            await asyncio.gather(a.applier.kick(), b.applier.kick())
            await asyncio.sleep(0.05)
        result = await asyncio.wait_for(report, 60)
    finally:
        never.set()
        db_a.close()
        db_b.close()
    # Each event covered by exactly one chunk of one of them.
    assert sum(c.events for c in chunks) == NUMBERS
    assert sum(c.orders for c in chunks) == ORDERS
    assert result.orders_created == ORDERS
    _check_exactly_once(w, result.revocation_id)


async def test_a_call_past_its_deadline_leaves_the_work_running_and_the_retry_answers(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await _world(registry_any_store)
    gate = asyncio.Event()

    async def hold(n: int) -> None:
        if n == 2:
            await gate.wait()

    _patch_chunks(monkeypatch, w.applier, hold)
    # The RPC's deadline cancels the handler's wait, not the applier's task.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_report(w, w.lifecycle, "r-deadline"), 0.5)
    gate.set()
    result = await asyncio.wait_for(_report(w, w.lifecycle, "r-deadline"), 60)
    assert (result.applied, result.orders_created) == (NUMBERS, ORDERS)
    _check_exactly_once(w, result.revocation_id)


async def _publish(bundle: Bundle, token: Token, refs: list[tuple[bytes, int]]) -> object:
    async with secure_channel(bundle) as channel:
        return await platforms_pb2_grpc.PlatformsStub(channel).PublishBindings(
            platforms_pb2.PublishBindingsRequest(
                request_id=uuid.uuid4().hex,
                bindings=[
                    common_pb2.Binding(
                        token=common_pb2.Token(key_id=token.key_id, value=token.value),
                        account_ref=ref,
                        bound_at=ts(days_ago(days)),
                        kind=common_pb2.BINDING_KIND_LOGIN,
                    )
                    for ref, days in refs
                ],
            )
        )


async def test_bindings_changed_while_a_report_is_applied(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the report's commit and its last chunk: a late binding published (bound
    before the new tenure) is revoked on arrival and not ordered again; one bound after the
    tenure is never revoked; one withdrawn gets no order."""
    w = await _world(registry_any_store)
    gate, first_done = asyncio.Event(), asyncio.Event()

    async def hold_second(n: int) -> None:
        if n == 2:
            first_done.set()
            await gate.wait()

    _patch_chunks(monkeypatch, w.applier, hold_second)
    report = asyncio.create_task(_report(w, w.lifecycle, "r-changed"))
    # Events 0 and 1 are the first chunk; the last number's orders come in the last one.
    token = w.events[-1].token
    p0, p1 = w.platforms
    try:
        await asyncio.wait_for(first_done.wait(), 30)  # the report and its first chunk
        assert not report.done()
        late = await _publish(p0, token, [(b"late", 300)])
        assert late.revoked_on_arrival == 1  # type: ignore[attr-defined]
        fresh = await _publish(p0, token, [(b"fresh", 5)])
        assert fresh.inserted == 1 and fresh.revoked_on_arrival == 0  # type: ignore[attr-defined]
        async with secure_channel(p1) as channel:
            gone = await platforms_pb2_grpc.PlatformsStub(channel).WithdrawBindings(
                platforms_pb2.WithdrawBindingsRequest(
                    request_id=uuid.uuid4().hex,
                    bindings=[
                        common_pb2.BindingKey(
                            token=common_pb2.Token(key_id=token.key_id, value=token.value),
                            account_ref=WITHDRAWN,
                        )
                    ],
                )
            )
        assert gone.withdrawn == 1
    finally:
        gate.set()
    result = await asyncio.wait_for(report, 60)
    assert result.orders_created == ORDERS - 1  # the withdrawn binding's is not made

    def read(s: Session) -> dict[bytes, list[str]]:
        rows = s.execute(
            select(BindingRow.account_ref, OrderRow.revocation_id).join(
                OrderRow, OrderRow.binding_pk == BindingRow.pk, isouter=True
            )
        ).all()
        out: dict[bytes, list[str]] = {}
        for ref, rid in rows:
            out.setdefault(bytes(ref), []).extend([rid] if rid else [])
        return out

    orders_of = w.reg.registry.db.transact(read, write=False)
    assert orders_of[b"fresh"] == []
    assert orders_of[WITHDRAWN] == []
    (arrival,) = orders_of[b"late"]
    assert arrival != result.revocation_id  # revoked on arrival, once
    assert all(len(v) == 1 for k, v in orders_of.items() if k not in (b"fresh", WITHDRAWN))


async def test_each_chunks_order_leaves_are_built_inside_its_append(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applier hands the building of a chunk's order leaves to `orders.append`
    (`meanwhile`), which runs it while PostgreSQL still writes the orders
    (tests/storage/test_copy_overlap.py); built after the append, the leaves would sit on
    the applier's path again. Every leaf of the report is still logged."""
    w = await _world(registry_any_store)
    inside = [False]
    calls: list[tuple[bool, int]] = []
    real_append, real_leaves = orders.append, log_record.order_leaves

    def append(*args: Any, **kwargs: Any) -> set[int]:
        inside[0] = True
        try:
            return real_append(*args, **kwargs)
        finally:
            inside[0] = False

    def leaves(*args: Any) -> list[Any]:
        built = real_leaves(*args)
        calls.append((inside[0], len(built)))
        return built

    monkeypatch.setattr(orders, "append", append)
    monkeypatch.setattr(log_record, "order_leaves", leaves)
    result = await asyncio.wait_for(_report(w, w.lifecycle, "r-inside"), 60)
    assert result.orders_created == ORDERS
    # One call per chunk (2, 4, 4, 2 events), each inside its append.
    assert [n for _, n in calls] == [8, 16, 16, 8]
    assert all(during for during, _ in calls)
    _check_exactly_once(w, result.revocation_id)
