"""Each platform's event feed: stream with replay, redelivery, heartbeats; acks.

Delivery is at-least-once. A stream first replays everything after the caller's cursor,
then waits for new events (woken by the notifier as soon as they commit), re-sends events
it delivered but that were not acked within the visibility timeout, and sends a heartbeat
when idle. Acks are idempotent per order and per request id. Events name their binding's
token under the store key, even when the row is still in the old form during a re-key.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from numbind.protocol import rekey as rekey_algebra
from numbind.protocol.limits import MAX_ACKS, MAX_REASON
from numbind.registry.domain import validate
from numbind.registry.domain.types import AckOutcome, EventKind, OrderState, Principal, now_us
from numbind.registry.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from numbind.registry.services import log_record
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.order_routes import OrderRoutes
from numbind.registry.services.standing import StandingService
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import feed, idempotency, log, order_acks
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.group_commit import GroupCommit

# Events per read; each page is one read and one mark-delivered write.
PAGE = 1000
_ORDER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FINAL = (int(OrderState.DONE), int(OrderState.REJECTED))
# Searches for deliveries past their visibility timeout per timeout, at most (see _stream).
STALE_CHECKS_PER_TIMEOUT = 4
# Sequences are stored as signed 64-bit integers.
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Heartbeat:
    server_us: int
    head_seq: int


@dataclass(frozen=True)
class AckInput:
    order_id: str
    outcome: int
    reason: str


def _state_of(outcome: int) -> int:
    """The order state an ack's outcome gives: REJECTED for a refusal, else DONE."""
    return int(OrderState.REJECTED if outcome == AckOutcome.REJECTED else OrderState.DONE)


class FeedService:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        stopping: asyncio.Event,
        standing: StandingService,
        *,
        heartbeat_seconds: float,
        visibility_timeout_seconds: float,
        max_streams_per_principal: int = 8,
    ) -> None:
        self._db = db
        # Acks and delivery marks of all of this process's streams share transactions (one
        # fsync each) when they arrive together: on SQLite each alone costs a commit behind
        # the one writer, and a reissue brings hundreds of them at once.
        self._writes = GroupCommit(db)
        self._tokens = tokens
        self._notifier = notifier
        self._standing = standing
        self._stopping = stopping
        self._heartbeat = heartbeat_seconds
        self._visibility = visibility_timeout_seconds
        self._max_streams = max_streams_per_principal
        # Open streams per principal pk, in this process.
        self._open: dict[int, int] = {}
        # Tokens of the orders sent here, to route their acks on PostgreSQL's partitions
        # (services.order_routes); SQLite's orders are one table.
        self.routes: OrderRoutes | None = None if db.is_sqlite else OrderRoutes()
        # Acks this process recorded, by (platform name, outcome name), for /metrics.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    async def _in_store_key(self, items: list[feed.FeedItem]) -> list[feed.FeedItem]:
        """Items whose binding row is still in an older key's form, re-keyed for the wire.

        A possibly stale map is harmless here: Delta maps to the key it was made for, and
        the token it yields is correct under that (still live) key id."""
        view = await self._tokens.view()
        if all(i.key_id == view.store_key_id for i in items):
            return items

        def convert() -> list[feed.FeedItem]:
            out = []
            for i in items:
                delta = view.deltas.get(i.key_id) if i.key_id != view.store_key_id else None
                if delta is not None:
                    token = rekey_algebra.rekey_many(delta, [i.token])[0]
                    i = i._replace(key_id=view.store_key_id, token=token)
                out.append(i)
            return out

        return await asyncio.to_thread(convert)

    async def _deliver(self, items: list[feed.FeedItem]) -> None:
        pending = [(i.order_pk, i.token) for i in items if i.state not in _FINAL]
        if pending:
            await self._writes.run(lambda s: feed.mark_delivered(s, pending))
            if self.routes is not None:
                self.routes.sent((i.order_id, i.token) for i in items if i.state not in _FINAL)

    async def stream(
        self, caller: Principal, after_seq: int, heartbeat_seconds: int
    ) -> AsyncIterator[list[feed.FeedItem] | Heartbeat]:
        """The caller's feed, for as long as it listens (and keeps its standing); at most
        `max_streams_per_principal` at once per principal, refused RESOURCE_EXHAUSTED."""
        open_now = self._open.get(caller.pk, 0)
        if open_now >= self._max_streams:
            raise ResourceExhausted(
                f"StreamEvents: {caller.uri} already has {open_now} open streams, the most "
                f"one principal may hold (max_streams_per_principal); close one first",
                retry_after=self._heartbeat,
            )
        self._open[caller.pk] = open_now + 1
        try:
            async for item in self._stream(caller, after_seq, heartbeat_seconds):
                yield item
        finally:
            left = self._open[caller.pk] - 1
            if left:
                self._open[caller.pk] = left
            else:
                del self._open[caller.pk]

    async def _stream(
        self, caller: Principal, after_seq: int, heartbeat_seconds: int
    ) -> AsyncIterator[list[feed.FeedItem] | Heartbeat]:
        if heartbeat_seconds:
            if not 1 <= heartbeat_seconds <= 3600:
                raise InvalidArgument(
                    f"heartbeat_seconds: got {heartbeat_seconds}, want 0 (default) or 1..3600"
                )
            interval = float(heartbeat_seconds)
        else:
            interval = self._heartbeat
        # Held to its standing from now: it may have authenticated from a cache a moment
        # stale (services.standing).
        caller = await self._standing.fresh(caller)
        await self._check_cursor(caller, after_seq)
        cursor = after_seq
        last_sent = time.monotonic()
        # The search for deliveries past their visibility timeout scans the caller's
        # delivered orders. A stream is woken by every commit of new events (hundreds during
        # a reissue), and searching on each wake-up cost more than reading the events (66 ms
        # a search against 20 ms a page at 1M bindings on PostgreSQL). An order can only go
        # stale a whole timeout after it was sent, so a search at most every quarter of the
        # timeout re-sends it at most that much later.
        stale_due = time.monotonic()
        while not self._stopping.is_set():
            generation = self._notifier.generation(caller.pk)
            items = await self._db.run(
                functools.partial(
                    feed.read_feed, platform_pk=caller.pk, after_seq=cursor, limit=PAGE
                ),
                write=False,
            )
            if items:
                cursor = items[-1].seq
            elif time.monotonic() >= stale_due:
                cutoff = now_us() - int(self._visibility * 1_000_000)
                items = await self._db.run(
                    functools.partial(
                        feed.stale_deliveries,
                        platform_pk=caller.pk,
                        delivered_before_us=cutoff,
                        limit=PAGE,
                    ),
                    write=False,
                )
                # A full page may have more behind it: search again on the next turn.
                if len(items) < PAGE:
                    stale_due = time.monotonic() + self._visibility / STALE_CHECKS_PER_TIMEOUT
            if items:
                # Nothing leaves for a principal whose standing changed since it connected.
                await self._standing.require(caller)
                await self._deliver(items)
                yield await self._in_store_key(items)
                last_sent = time.monotonic()
                continue
            wait = max(0.0, interval - (time.monotonic() - last_sent))
            wait = min(wait, self._visibility / 2)
            woke = await self._idle(caller, generation, wait, cursor)
            if woke is None:
                return
            if not woke and time.monotonic() - last_sent >= interval:
                head = await self._db.run(lambda s: feed.feed_head(s, caller.pk), write=False)
                yield Heartbeat(now_us(), head)
                last_sent = time.monotonic()

    async def _check_cursor(self, caller: Principal, after_seq: int) -> None:
        """A cursor past the head would silently skip every event up to it: refused."""
        if not 0 <= after_seq <= MAX_SEQ:
            raise InvalidArgument(f"after_seq: got {after_seq}, want 0..{MAX_SEQ}")
        if after_seq == 0:
            return
        head = await self._db.run(lambda s: feed.feed_head(s, caller.pk), write=False)
        if after_seq > head:
            raise OutOfRange(
                f"after_seq: got {after_seq}, beyond the feed head {head}; resume from an "
                f"acked sequence at most {head} (0 replays the whole feed)"
            )

    async def _idle(
        self, caller: Principal, generation: int, seconds: float, cursor: int
    ) -> bool | None:
        """Wait up to `seconds` for new events: True when woken, False on timeout, None when
        the server stops. The caller's standing is re-read at least every check interval
        (and whenever the notifier wakes the stream), so a suspension made by any process
        on this store ends the stream within that interval: Unauthenticated."""
        deadline = time.monotonic() + seconds
        while True:
            step = max(0.0, min(deadline - time.monotonic(), self._standing.check_seconds))
            stop = asyncio.ensure_future(self._stopping.wait())
            woke = asyncio.ensure_future(
                self._notifier.wait(caller.pk, generation, step, read_through=cursor)
            )
            done, _ = await asyncio.wait({stop, woke}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (stop, woke):
                if fut not in done:
                    fut.cancel()
            if stop in done:
                return None
            await self._standing.require(caller)
            if woke.result():
                return True
            if time.monotonic() >= deadline:
                return False

    async def ack(
        self, caller: Principal, request_id: str, body_hash: bytes, acks: list[AckInput]
    ) -> tuple[int, int]:
        validate.request_id(request_id)
        validate.batch_size("acks", len(acks), MAX_ACKS)
        seen: dict[str, int] = {}
        for i, ack in enumerate(acks):
            if not _ORDER_ID.fullmatch(ack.order_id):
                raise InvalidArgument(
                    f"acks[{i}].order_id: got {ack.order_id[:40]!r}, want an order id from an event"
                )
            if ack.order_id in seen:
                raise InvalidArgument(f"acks[{i}].order_id: duplicates acks[{seen[ack.order_id]}]")
            seen[ack.order_id] = i
            if ack.outcome not in AckOutcome._value2member_map_:
                raise InvalidArgument(
                    f"acks[{i}].outcome: got {ack.outcome}, want UNBOUND, ALREADY_GONE, "
                    "REJECTED or NOTED"
                )
            if ack.outcome == AckOutcome.REJECTED:
                if not ack.reason.strip() or len(ack.reason) > MAX_REASON:
                    raise InvalidArgument(
                        f"acks[{i}].reason: got {len(ack.reason)} characters, want 1..500 "
                        "for REJECTED"
                    )
            elif ack.reason:
                raise InvalidArgument(f"acks[{i}].reason: only REJECTED carries a reason")

        def act(session: Session) -> dict[str, Any]:
            # In the write's own transaction: no ack is recorded after a change of standing
            # made by any process, however recently the caller authenticated.
            self._standing.require_in(session, caller)
            # The acks that can be written as asked are written while their orders are
            # found (PostgreSQL, orders this process streamed); the rest are read and
            # judged below. A refusal raises, and the transaction takes both back.
            written = order_acks.ack_open(session, caller.pk, planned, hints)
            rest = [i for i in ids if i not in written]
            targets = order_acks.orders_by_id(session, rest, hints) if rest else {}
            changes: list[tuple[order_acks.AckTarget, int, int, str]] = []
            duplicates = 0
            for i, ack in enumerate(acks):
                done = written.get(ack.order_id)
                if done is not None:
                    changes.append((done, _state_of(ack.outcome), ack.outcome, ack.reason))
                    continue
                order = targets.get(ack.order_id)
                if order is None or order.platform_pk != caller.pk:
                    raise NotFound(f"acks[{i}].order_id: no order {ack.order_id} in your feed")
                notice = order.kind == int(EventKind.NUMBER_DEACTIVATED)
                if notice != (ack.outcome == AckOutcome.NOTED):
                    want = "NOTED" if notice else "UNBOUND, ALREADY_GONE or REJECTED"
                    raise InvalidArgument(
                        f"acks[{i}].outcome: got {AckOutcome(ack.outcome).name}, want {want} "
                        f"for a {'notice' if notice else 'revocation order'}"
                    )
                if order.state in _FINAL:
                    if order.outcome == ack.outcome:
                        duplicates += 1
                        continue
                    raise FailedPrecondition(
                        f"acks[{i}]: order {ack.order_id} was already acked "
                        f"{AckOutcome(order.outcome).name}"
                    )
                changes.append((order, _state_of(ack.outcome), ack.outcome, ack.reason))
            order_acks.record_acks(
                session, changes, written=frozenset(o.pk for o in written.values())
            )
            log.append(session, log_record.acks(caller.pk, caller.name, changes))
            recorded[:] = [outcome for _, _, outcome, _ in changes]
            return {"recorded": len(changes), "duplicate": duplicates}

        def tx(session: Session) -> dict[str, Any]:
            # What the run that commits recorded: nothing when the request id is answered
            # from its record (a retry), or when a failed group's unit runs again alone.
            recorded.clear()
            return idempotency.once(
                session, caller.pk, "AckEvents", request_id, body_hash, lambda: act(session)
            )

        recorded: list[int] = []
        ids = [a.order_id for a in acks]
        planned = [
            order_acks.PlannedAck(a.order_id, _state_of(a.outcome), a.outcome, a.reason)
            for a in acks
        ]
        hints = self.routes.hints(ids) if self.routes is not None else None
        result = await self._writes.run(tx)
        # Committed now.
        self.outcomes.update((caller.name, AckOutcome(o).name.lower()) for o in recorded)
        if self.routes is not None:
            self.routes.acked(ids)
        return int(result["recorded"]), int(result["duplicate"])
