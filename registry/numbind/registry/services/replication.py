"""Replication of the hub's lifecycle log, both ends. No grpc here.

At the hub (`HubLog`): read entries after a sequence with the key map a follower needs,
record acks, wait for new entries. At a member (`Replica`): apply a batch of entries in
one transaction (its own bindings' orders and feed events, its replica of number states,
and its cursor, together), and follow the hub's key map (install its token keys, re-key
its own store from the hub's delta when the hub rotates).

Exactly-once application over at-least-once delivery: the cursor moves in the transaction
that applies the entries, and an entry at or below it is skipped, so a batch delivered
twice (a reconnect before its ack, a replay after a crash) changes nothing the second time.
Entries must arrive without a gap: one that skips a sequence is refused (the follower then
resumes from its cursor).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain.keymap import KeyView
from numbind.registry.domain.types import KeyState, Principal, now_us
from numbind.registry.errors import FailedPrecondition
from numbind.registry.services.lifecycle import LifecycleService, MappedEvent
from numbind.registry.services.notifier import LOG_CHANNEL, FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import keymap, principals, replication, token_keys
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.replication import Cursor, Entry, HubKeys

__all__ = ["Applied", "Batch", "HubLog", "Replica"]

log = logging.getLogger(__name__)

# How often a follower's stream looks for entries another hub process appended.
_POLL_SECONDS = 1.0

# Entries a member applies per transaction. A carrier's batch of 10,000 numbers arrives in
# a few stream messages; applied whole, its first order could reach a platform only after
# the last entry's orders were written (seconds), and every other writer (acks, feeds)
# queued behind it. In chunks, each committed in order with the cursor, the first orders
# are in a feed after the first chunk and the feeds drain while the rest is applied. The
# first chunk of a burst is small (its orders reach the feeds soonest); each next one is
# twice the last, up to APPLY_CHUNK, and the growth carries over from one stream message to
# the next while the replica is behind the hub's head: a backlog goes through in few, large
# transactions (each commit is an fsync on SQLite, and the acks that queue behind one share
# a transaction: storage.group_commit), so the writer spends its time on the work itself.
FIRST_CHUNK = 50
APPLY_CHUNK = 800


@dataclass(frozen=True)
class Batch:
    entries: list[Entry]
    keys: HubKeys
    head_seq: int
    head_recorded_us: int


class HubLog:
    """The hub's lifecycle log as followers read it."""

    def __init__(self, db: Database, notifier: FeedNotifier) -> None:
        self._db = db
        self._notifier = notifier

    def generation(self) -> int:
        return self._notifier.generation(LOG_CHANNEL)

    async def wait(self, seen: int, seconds: float) -> bool:
        return await self._notifier.wait(LOG_CHANNEL, seen, seconds)

    async def read(self, after_seq: int, limit: int) -> Batch:
        """Entries after `after_seq`, then the key map and head, in that order: a key
        change that commits between the two reads is then in the key map sent with
        entries written under it."""

        def tx(session: Session) -> Batch:
            entries = replication.read(session, after_seq, limit)
            keys = replication.hub_keys(session)
            head_seq, head_us = replication.head(session)
            return Batch(entries, keys, head_seq, head_us)

        return await self._db.run(tx, write=False)

    async def follow(
        self,
        after_seq: int,
        stopping: asyncio.Event,
        *,
        heartbeat_seconds: float = 5.0,
        limit: int = 2000,
        manifest: Callable[[], object] = lambda: None,
    ) -> AsyncIterator[tuple[Batch, bool]]:
        """(batch, key map changed) from `after_seq` on, until `stopping`: every batch of
        entries as soon as it is there, the key map first and whenever it or `manifest()`
        (the federation's manifest, which travels with the key map) changes, and an empty
        batch (the head, for the follower's lag) at least every heartbeat."""
        epoch: int | None = None
        held: object = None
        last_sent = 0.0
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            seen = self.generation()
            batch = await self.read(after_seq, limit)
            current = manifest()
            changed = batch.keys.epoch != epoch or current != held
            if batch.entries or changed or loop.time() - last_sent >= heartbeat_seconds:
                yield batch, changed
                epoch = batch.keys.epoch
                held = current
                last_sent = loop.time()
                if batch.entries:
                    after_seq = batch.entries[-1].seq
            if len(batch.entries) == limit:
                continue
            # Woken by a report in this process; polled for one made by another.
            await self.wait(seen, _POLL_SECONDS)

    async def ack(self, member: str, seq: int) -> None:
        # A member acks every heartbeat, mostly with the position it acked before: looked
        # up in a read, that ack takes no turn at the store's one writer (which a holder
        # query's nonce write and the carriers' reports wait for).
        held = await self._db.run(lambda s: replication.acks(s).get(member), write=False)
        if held is not None and seq <= held:
            return
        await self._db.run(lambda s: replication.record_ack(s, member, seq))

    async def positions(self) -> tuple[dict[str, int], int, int]:
        def tx(session: Session) -> tuple[dict[str, int], int, int]:
            head_seq, head_us = replication.head(session)
            return replication.acks(session), head_seq, head_us

        return await self._db.run(tx, write=False)


@dataclass(frozen=True)
class Applied:
    applied_seq: int
    entries: int
    orders: int


class Replica:
    """A member's replica of the hub's lifecycle: number states, and what they trigger on
    this member's own bindings."""

    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        lifecycle: LifecycleService,
        source: str,
        on_rekey: Callable[[], None] | None = None,
        *,
        first_chunk: int = FIRST_CHUNK,
        chunk: int = APPLY_CHUNK,
    ) -> None:
        if not 1 <= first_chunk <= chunk:
            raise ValueError(f"chunks: got {first_chunk}, {chunk}; want 1 <= first <= most")
        self._first_chunk = first_chunk
        self._chunk = chunk
        # The next chunk's size when the last batch left this replica behind the hub's head
        # (a burst still arriving); the first chunk again once it had caught up.
        self._next_chunk = first_chunk
        self._db = db
        self._tokens = tokens
        self._lifecycle = lifecycle
        # The hub's member id: the cursor's name, and the principal its events come from.
        self._source = source
        self._hub: Principal | None = None
        # Wakes this store's re-key runner when the hub's rotation reaches it.
        self._on_rekey = on_rekey

    async def cursor(self) -> Cursor:
        return await self._db.run(lambda s: replication.cursor(s, self._source), write=False)

    async def _hub_principal(self) -> Principal:
        if self._hub is None:
            found = await self._db.run(
                lambda s: principals.get_active(s, "registry", self._source), write=False
            )
            if found is None:
                raise FailedPrecondition(f"registry {self._source} is not a principal here")
            self._hub = found
        return self._hub

    async def note_head(self, head_seq: int, head_recorded_us: int) -> None:
        await self._db.run(
            lambda s: replication.advance(
                s,
                self._source,
                applied_seq=None,
                applied_recorded_us=None,
                head_seq=head_seq,
                head_recorded_us=head_recorded_us,
            )
        )

    async def apply(self, entries: list[Entry], head_seq: int, head_recorded_us: int) -> Applied:
        """Apply `entries` in order, in chunks (`first_chunk` entries, then each twice the
        last up to `chunk`, carried on from the previous batch when that one left the
        replica behind `head_seq`): one transaction each (its events' orders and feed
        events, number states, and the cursor together), the chunk's platforms woken as it
        commits. A chunk that fails (a gap) leaves the chunks before it applied and the
        cursor after them; the follower resumes there."""
        hub = await self._hub_principal()
        applied_seq = None
        count = orders = start = 0
        size, self._next_chunk = self._next_chunk, self._first_chunk
        while start < len(entries):
            part = await self._apply_chunk(
                hub, entries[start : start + size], head_seq, head_recorded_us
            )
            applied_seq = part.applied_seq
            count, orders = count + part.entries, orders + part.orders
            start, size = start + size, min(size * 2, self._chunk)
        if applied_seq is None:
            applied_seq = (await self.cursor()).applied_seq
        elif applied_seq < head_seq:
            self._next_chunk = size  # more of the burst is on its way
        return Applied(applied_seq, count, orders)

    async def _apply_chunk(
        self, hub: Principal, entries: list[Entry], head_seq: int, head_recorded_us: int
    ) -> Applied:
        def act(session: Session, view: KeyView) -> dict[str, Any]:
            at = replication.cursor(session, self._source, lock=True)
            fresh = [e for e in entries if e.seq > at.applied_seq]
            if not fresh:
                return {"applied_seq": at.applied_seq, "entries": 0, "orders": 0, "platforms": []}
            expected = at.applied_seq + 1
            for e in fresh:
                if e.seq != expected:
                    raise FailedPrecondition(
                        f"lifecycle log: got seq {e.seq}, want {expected} (a gap); "
                        f"resuming from {at.applied_seq}"
                    )
                expected += 1
            mapped = [
                MappedEvent(
                    view.map(f"entries[seq={e.seq}].token", e.key_id, e.token),
                    e.kind,
                    e.effective_us,
                    e.revocation_id,
                )
                for e in fresh
            ]
            result = self._lifecycle.apply_mapped(session, hub, view.store_key_id, mapped)
            last = fresh[-1]
            replication.advance(
                session,
                self._source,
                applied_seq=last.seq,
                applied_recorded_us=last.recorded_us,
                head_seq=head_seq,
                head_recorded_us=head_recorded_us,
            )
            return {
                "applied_seq": last.seq,
                "entries": len(fresh),
                "orders": result["orders_created"] + result["notices_created"],
                "platforms": result["platforms"],
            }

        out = await self._tokens.act(act)
        self._lifecycle.notify(out.pop("platforms"))
        return Applied(**out)

    async def follow_keys(self, keys: HubKeys) -> bool:
        """Take the hub's key map: its token keys (public halves), and its store key. When
        the hub's store key is not this store's, re-key this store with the hub's delta
        (True: a re-key started). A store key the hub no longer maps is refused."""

        def act(session: Session) -> bool:
            token_keys.sync(session, [(k[0], k[1], KeyState(k[2]), k[3]) for k in keys.keys])
            have = keymap.store_key(session)
            deltas = {key_id: (to, delta) for key_id, to, delta in keys.deltas}
            started = False
            if have != keys.store_key_id and (
                have not in deltas or deltas[have][0] != keys.store_key_id
            ):
                # A key the hub never had (this store's own from `admin init`): taken
                # over while the store is empty, else refused.
                keymap.adopt_store_key(session, keys.store_key_id)
            elif have != keys.store_key_id:
                keymap.require_no_rekey(session)
                keymap.begin_rekey(session, have, keys.store_key_id, deltas[have][1], now_us())
                started = True
            known = keymap.delta_keys(session)
            for key_id, (to, delta) in deltas.items():
                if to == keys.store_key_id and key_id not in known and key_id != have:
                    keymap.put_delta(session, key_id, to, delta)
            return started

        started = await self._db.run(act)
        self._tokens.invalidate()
        if started:
            log.info("hub rotated its token key: re-keying this store to %s", keys.store_key_id)
            if self._on_rekey is not None:
                self._on_rekey()
        return started
