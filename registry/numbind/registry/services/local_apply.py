"""A single registry's carrier reports, their orders created after the report commits, in
chunks. No grpc here.

Issue 14: a 10,000-number reissue writes 100,000 orders and log leaves; in
the report's own transaction the first of them reached a platform only after the last was
written (29 s on PostgreSQL). The report now commits its triggers only (number states,
lifecycle events naming their revocation, the revocation, the events' log leaves); this
applier then creates the orders in lifecycle-log order, in chunks (`first_chunk` events,
each next chunk twice the last up to `chunk`), each committed with its cursor
(storage.local_apply) and the chunk's platforms woken as it commits. The trigger's log leaf,
which commits to all of a revocation's orders, is appended with its last chunk.

Exactly once: the cursor moves in the transaction that creates the chunk's orders, under
the cursor row's lock, so a crash between chunks resumes after the last committed one, and
processes sharing a PostgreSQL store apply one chunk at a time, each skipping what is at or
below the cursor. A binding is ordered once per revocation however its events fall into
chunks (an earlier chunk's orders are read back for a token it already saw).

The report call waits until its events' orders exist (woken in-process after each chunk,
polling the cursor for another process's chunks) and answers as before. The work belongs to
a task of its own: a call cancelled by its deadline leaves it running, and a retry of the
same request answers once it is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from numbind.registry.domain import lifecycle, logged
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import EventCause, LifecycleKind
from numbind.registry.errors import Unavailable
from numbind.registry.services import lifecycle_orders, log_record
from numbind.registry.services.notifier import LOG_CHANNEL, FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import bindings, log, numbers, orders, replication
from numbind.registry.storage import local_apply as store
from numbind.registry.storage.db import Database, Session

log_ = logging.getLogger(__name__)

# Events per chunk. The first is small, so its orders reach the feeds soonest (about 100
# orders for a reissue whose numbers carry 10 bindings each; a full-size PostgreSQL reissue
# on a slow machine had its first event at 2.4-2.9 s in five runs with 50 events, at 1.7,
# 2.2 and 2.5 s with 10). Later ones double up to `chunk` (fewer transactions through a
# large report).
FIRST_CHUNK = 10
APPLY_CHUNK = 500

# How often a waiting report re-reads the cursor (another process may apply its chunks),
# and how often an idle applier looks for reports another process left unapplied.
POLL_SECONDS = 0.5


@dataclass
class Chunk:
    """What one chunk did: the cursor after it (None: no report here uses the applier),
    the events it covered, the platforms whose feeds grew, the revocations it completed."""

    cursor: int | None
    events: int = 0
    orders: int = 0
    platforms: list[int] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)


class LocalApplier:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        deadline_seconds: float,
        *,
        first_chunk: int = FIRST_CHUNK,
        chunk: int = APPLY_CHUNK,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if not 1 <= first_chunk <= chunk:
            raise ValueError(f"chunks: got {first_chunk}, {chunk}; want 1 <= first <= most")
        self._db = db
        self._tokens = tokens
        self._notifier = notifier
        self._deadline = deadline_seconds
        # Public so that a test can make a small report take several chunks.
        self.first_chunk = first_chunk
        self.chunk = chunk
        self._poll = poll_seconds
        self._cursor = 0  # the highest cursor this process has seen
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._again = False
        # A thread of its own: in the shared pool each chunk queued behind the platforms'
        # feed reads and acks it had just woken (a 20-platform reissue on PostgreSQL
        # applied its orders at about half the rate of one transaction).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numbind-apply")

    # -- waiting ---------------------------------------------------------------------------

    async def wait(self, seq: int) -> None:
        """Until the orders of every event up to `seq` exist. Cancelling the wait (the
        caller's deadline) leaves the work running."""
        if self._cursor < seq:  # a retry's may be done already, here or by another process
            at = await self._db.run(store.cursor, write=False)
            self._seen(at or 0)
        if self._cursor >= seq:
            return
        self.kick()
        while self._cursor < seq:
            progress = self._progress
            try:
                await asyncio.wait_for(progress.wait(), self._poll)
                continue
            except TimeoutError:
                pass
            # Another process may be applying (it holds the cursor row), or this process's
            # task stopped on an error: look, and take over what is left.
            at = await self._db.run(store.cursor, write=False)
            self._seen(at or 0)
            task = self._task
            if self._cursor < seq and task is not None and task.done():
                if not task.cancelled() and task.exception() is not None:
                    raise Unavailable(
                        "storage: the report's orders are still being created; retry the "
                        "report with the same request_id"
                    )
                self.kick()

    def _seen(self, cursor: int) -> None:
        if cursor > self._cursor:
            self._cursor = cursor
            done, self._progress = self._progress, asyncio.Event()
            done.set()

    # -- applying --------------------------------------------------------------------------

    def kick(self) -> asyncio.Task[None]:
        """Apply what is pending, in a task of its own (one per process at a time)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="numbind-local-apply")
        else:
            self._again = True  # a report committed while the task was reading
        return self._task

    async def _drain(self) -> None:
        size = self.first_chunk
        while True:
            self._again = False
            done = await self.apply_chunk(size)
            if done.cursor is not None:
                self._seen(done.cursor)
            if done.events == 0 and not self._again:
                return
            size = self.first_chunk if done.events == 0 else min(size * 2, self.chunk)

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: on start, and whenever a report commits (here, or in another
        process: the lifecycle log's wake-up, or at the latest each poll), apply what is
        pending. Resumes a report a crashed process left part-applied."""
        while not stopping.is_set():
            seen = self._notifier.generation(LOG_CHANNEL)
            try:
                if await self._db.run(_behind, write=False):
                    await self.kick()
            except Unavailable as exc:  # the store away: try again at the next poll
                log_.warning("local applier: pending orders not applied yet (%s)", exc)
            except Exception:  # a bug, logged whole; the next poll tries again
                log_.exception("local applier: pending orders not applied yet")
            await self._notifier.wait(LOG_CHANNEL, seen, max(self._poll, 1.0))
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=5.0)

    async def apply_chunk(self, size: int) -> Chunk:
        """One chunk of at most `size` events after the cursor, committed with it."""
        started = time.monotonic()
        done = await self._tokens.act(
            lambda s, view: self._apply(s, view, size), executor=self._executor
        )
        if done.platforms:
            self._notifier.notify(done.platforms)
        if done.events:
            log_.debug(
                "local applier: %d events, %d orders, through seq %s in %.0f ms",
                done.events,
                done.orders,
                done.cursor,
                (time.monotonic() - started) * 1000,
            )
        return done

    def _apply(self, session: Session, view: KeyView, size: int) -> Chunk:
        at = store.cursor(session, lock=True)
        if at is None:
            return Chunk(None)
        entries = replication.read(session, at, size)
        if not entries:
            return Chunk(at)
        last = entries[-1].seq
        named = [e for e in entries if e.revocation_id and e.applied]
        mapped: dict[int, StoreToken] = {
            e.seq: view.map(f"lifecycle_events[seq={e.seq}].token", e.key_id, e.token)
            for e in named
        }
        wanted = list({t.value: t for t in mapped.values()}.values())
        # The numbers first, FOR UPDATE (PostgreSQL): a publish revoking a late binding on
        # arrival (services.arrival) locks them too, so one of the two sees the other's order.
        numbers.load_stored(session, wanted, lock=True)
        live = bindings.live_for_tokens(session, wanted)
        rids = list(dict.fromkeys(e.revocation_id for e in named))
        done: set[tuple[str, int, int]] = set()
        for rid in rids:
            forms = {
                form: mapped[e.seq].value
                for e in named
                if e.revocation_id == rid
                for form in mapped[e.seq].forms
            }
            earlier = store.earlier_tokens(session, rid, list(forms), at)
            pks = [b.pk for f in earlier for b in live.get(forms[f], ())]
            done |= {(rid, pk, kind) for pk, kind in store.ordered(session, rid, pks)}
        items = [
            (
                e.revocation_id,
                mapped[e.seq].value,
                lifecycle.trigger_of(LifecycleKind(e.kind), e.effective_us),
            )
            for e in named
        ]
        groups = lifecycle_orders.plan(items, live, done=done)
        platforms: set[int] = set()
        leaves: list[logged.LogLeaf] = []
        count = 0
        for rid, group in groups.items():
            created: list[tuple[str, orders.NewOrder]] = []
            names = log_record.platform_names(session, group.new)
            # The leaves are built while the server writes the orders (orders.append): for
            # a 5,000-order chunk on an idle machine the rows were sent by 6-14 ms, the
            # leaves and feed rows built by 40-71 ms, and the COPY ended at 86-154 ms; in
            # the full reissue bench, building leaves after the COPY took 1.4 s of the
            # applier's path.
            build = partial(_extend_leaves, leaves, names, rid, created)
            platforms |= orders.append(
                session, rid, group.new, self._deadline, created=created, meanwhile=build
            )
            count += len(created)
        completed = []
        for rid in rids:
            through = store.through(session, rid)
            if through is not None and through <= last:
                leaves.append(_trigger(session, rid))
                completed.append(rid)
        store.advance(session, last)
        log.append(session, leaves)
        return Chunk(last, len(entries), count, sorted(platforms), completed)

    # -- answers ---------------------------------------------------------------------------

    async def counts(self, revocation_id: str) -> tuple[int, int]:
        """(orders, notices) a revocation created (read back: a retry answers the same)."""
        return await self._db.run(lambda s: store.counts(s, revocation_id), write=False)


def _extend_leaves(
    out: list[logged.LogLeaf],
    names: dict[int, str],
    revocation_id: str,
    created: list[tuple[str, orders.NewOrder]],
) -> None:
    out.extend(log_record.order_leaves(names, revocation_id, created))


def _trigger(session: Session, revocation_id: str) -> logged.LogLeaf:
    """A complete revocation's trigger leaf, committing to every order it created; its
    cause as a report's in one transaction had it (REISSUED when it revoked anything)."""
    revokes, _ = store.counts(session, revocation_id)
    cause = EventCause.REISSUED if revokes else EventCause.DEACTIVATED
    row = orders.revocation(session, revocation_id)
    assert row is not None  # written with the events that name it
    if row.cause != int(cause):
        store.set_cause(session, revocation_id, cause)
    ids = orders.ids_of(session, revocation_id)
    names = log.principal_names(session, [row.carrier_pk])
    return logged.revocation(
        revocation_id=revocation_id,
        cause=cause,
        carrier_pk=row.carrier_pk,
        carrier=names.get(row.carrier_pk, ""),
        orders=ids,
    )


def _behind(session: Session) -> bool:
    at = store.cursor(session)
    return at is not None and at < replication.head(session)[0]
