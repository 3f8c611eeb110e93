"""A member applies the hub's lifecycle log in bounded chunks, each committed in order with
its cursor before its platforms are woken, on SQLite and (when configured) PostgreSQL.

The lifecycle service and the key map are stand-ins here (what a chunk writes besides the
cursor is the lifecycle service's, tested elsewhere); the cursor, the transactions and the
order of commits and wake-ups are the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import Principal
from numbind.registry.errors import FailedPrecondition
from numbind.registry.services.lifecycle import LifecycleService, MappedEvent
from numbind.registry.services.replication import Replica
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import migrate, principals, replication
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.replication import Entry

HUB = "hub"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.write_engine)
    database.transact(lambda s: principals.register(s, "registry", HUB))
    yield database
    database.close()


@dataclass
class _View:
    store_key_id: str = "0123456789abcdef"

    def map(self, where: str, key_id: str, token: bytes) -> StoreToken:
        return StoreToken(token)


class _Tokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def act(self, fn: Callable[[Session, _View], Any], *, write: bool = True) -> Any:
        return await self._db.run(lambda s: fn(s, _View()), write=write)


@dataclass
class _Lifecycle:
    """Records what each transaction applied, and the cursor committed when it is told to
    wake the platforms."""

    db: Database
    applied: list[list[bytes]] = field(default_factory=list)
    woken_at: list[int] = field(default_factory=list)

    def apply_mapped(
        self, session: Session, source: Principal, store_key: str, events: list[MappedEvent]
    ) -> dict[str, Any]:
        self.applied.append([e.token.value for e in events])
        return {"orders_created": len(events), "notices_created": 0, "platforms": [7]}

    def notify(self, platforms: list[int]) -> None:
        if not platforms:  # a chunk delivered again: nothing applied, nobody to wake
            return
        committed = self.db.transact(lambda s: replication.cursor(s, HUB), write=False)
        self.woken_at.append(committed.applied_seq)


def _replica(db: Database, first: int, most: int) -> tuple[Replica, _Lifecycle]:
    lifecycle = _Lifecycle(db)
    replica = Replica(
        db,
        cast(TokenMapper, _Tokens(db)),
        cast(LifecycleService, lifecycle),
        HUB,
        first_chunk=first,
        chunk=most,
    )
    return replica, lifecycle


def _entries(seqs: list[int]) -> list[Entry]:
    return [Entry(s, "0123456789abcdef", bytes([s]) * 32, 3, 1, 100 + s, True) for s in seqs]


def test_a_batch_is_applied_in_chunks_each_committed_before_its_platforms_wake(
    db: Database,
) -> None:
    replica, lifecycle = _replica(db, 1, 4)
    applied = asyncio.run(replica.apply(_entries(list(range(1, 12))), 19, 119))
    assert (applied.applied_seq, applied.entries, applied.orders) == (11, 11, 11)
    # The first chunk small, each next twice the last, up to the most.
    assert [len(c) for c in lifecycle.applied] == [1, 2, 4, 4]
    # Each chunk's platforms are woken after its commit, the cursor past that chunk.
    assert lifecycle.woken_at == [1, 3, 7, 11]
    # Delivered again (a reconnect before the ack): nothing is applied twice.
    again = asyncio.run(replica.apply(_entries([9, 10, 11, 12]), 19, 119))
    assert (again.applied_seq, again.entries) == (12, 1)
    assert lifecycle.applied[-1] == [bytes([12]) * 32]


def test_a_gap_keeps_the_chunks_before_it_and_resumes_from_them(db: Database) -> None:
    replica, lifecycle = _replica(db, 2, 2)
    with pytest.raises(FailedPrecondition, match="got seq 5, want 4"):
        asyncio.run(replica.apply(_entries([1, 2, 3, 5]), 9, 109))
    assert asyncio.run(replica.cursor()).applied_seq == 2
    assert [len(c) for c in lifecycle.applied] == [2]
    assert asyncio.run(replica.apply(_entries([3, 4]), 9, 109)).applied_seq == 4


def test_an_empty_batch_answers_the_cursor(db: Database) -> None:
    replica, lifecycle = _replica(db, 2, 2)
    asyncio.run(replica.apply(_entries([1]), 1, 101))
    assert asyncio.run(replica.apply([], 1, 101)).applied_seq == 1
    assert len(lifecycle.applied) == 1


def test_chunks_keep_growing_across_batches_while_behind_the_head(db: Database) -> None:
    """A burst arrives in several stream messages: while the replica is behind the hub's
    head, the next batch goes on at the size the last one reached (few, large transactions
    through a backlog); once it has caught up, a new burst starts small again."""
    replica, lifecycle = _replica(db, 1, 4)
    asyncio.run(replica.apply(_entries([1, 2, 3]), 20, 120))  # behind: head 20
    asyncio.run(replica.apply(_entries(list(range(4, 13))), 20, 120))
    asyncio.run(replica.apply(_entries(list(range(13, 21))), 20, 120))  # caught up
    asyncio.run(replica.apply(_entries([21, 22, 23]), 23, 123))
    assert [len(c) for c in lifecycle.applied] == [1, 2, 4, 4, 1, 4, 4, 1, 2]


async def test_the_hub_writes_an_ack_only_when_it_moves_the_member_forward(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from numbind.registry.services.notifier import FeedNotifier
    from numbind.registry.services.replication import HubLog

    writes: list[bool] = []
    transact = db.transact

    def counted(fn: Callable[[Session], Any], *, write: bool = True) -> Any:
        writes.append(write)
        return transact(fn, write=write)

    monkeypatch.setattr(db, "transact", counted)
    hub = HubLog(db, FeedNotifier())
    for seq in (0, 0, 5, 5, 3, 5, 7):  # heartbeats repeat; a late, older ack changes nothing
        await hub.ack("net", seq)
    assert writes.count(True) == 3  # the first ack (no row yet), 5 and 7
    positions, _, _ = await hub.positions()
    assert positions == {"net": 7}
