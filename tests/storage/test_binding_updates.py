"""A revoked binding's two state changes on PostgreSQL (migration 0012_binding_room): its
row gets REVOKING when its order is written and REVOKED when the order is acked. No index
of `bindings` holds the columns they write, and the partitions keep room on each page, so
both are heap-only (HOT) updates that write no index entry.

Bindings published packed (fillfactor 100, before 0012) left no room: none of these
changes was HOT, each wrote a new entry in all three of the row's indexes."""

from __future__ import annotations

from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventCause,
    EventKind,
    OrderState,
    Token,
)
from numbind.registry.storage import bindings, migrate, order_acks, orders, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from tests.storage._heap import partition_options, updates
from tests.tokens import token_in_bucket

T0 = 1_700_000_000_000_000
# One token's bindings share a partition: 800 rows of ~170 bytes fill about twenty pages.
PUBLISHED = 800
# Every twentieth is revoked, at most two rows of a ~35-row page: both changes' versions
# (4 x ~170 bytes) then fit in the 15 % left free without pruning the first change's dead
# versions, which any snapshot older than it (autovacuum's ANALYZE of the new rows, say)
# holds back. Every tenth left it to pruning, and 27 of 80 acks were not HOT now and then
# under `make test`.
REVOKED = range(0, PUBLISHED, 20)


def _since(before: tuple[int, int], after: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


def _published(db: Database) -> tuple[int, list[bindings.StoredBinding]]:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cb").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "pb").pk)
    token = Token("0123456789abcdef", token_in_bucket(7))
    new = [Binding(token, b"acct-%04d" % i, T0 + i, BindingKind.LOGIN) for i in range(PUBLISHED)]
    # The publish path itself (COPY of new rows on PostgreSQL): the pages as a store has them.
    counts = db.transact(lambda s: bindings.upsert(s, bindings.prepare(plat, new, T0)))
    assert counts.inserted == PUBLISHED
    stored = db.transact(lambda s: bindings.bindings_for_token(s, token.value), write=False)
    by_ref = {b.binding.account_ref: b for b in stored}
    return carrier, [by_ref[b"acct-%04d" % i] for i in REVOKED]


def test_a_revoked_bindings_state_changes_are_heap_only_updates(pg_db: Database) -> None:
    carrier, revoked = _published(pg_db)

    def revoke(s: Session) -> tuple[int, int]:
        before = updates(s, "bindings")
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in revoked]
        orders.append(s, rid, new, 60.0)
        return _since(before, updates(s, "bindings"))

    assert pg_db.transact(revoke) == (len(revoked), len(revoked))

    def ack(s: Session) -> tuple[int, int]:
        before = updates(s, "bindings")
        ids = s.execute(text("SELECT id FROM orders")).scalars().all()
        found = order_acks.orders_by_id(s, list(ids))
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])
        return _since(before, updates(s, "bindings"))

    assert pg_db.transact(ack) == (len(revoked), len(revoked))
    states = pg_db.transact(
        lambda s: dict(
            s.execute(select(BindingRow.state, func.count()).group_by(BindingRow.state)).all()
        ),
        write=False,
    )
    assert states == {
        int(BindingState.ACTIVE): PUBLISHED - len(revoked),
        int(BindingState.REVOKED): len(revoked),
    }


def _indexed(s: Session) -> list[str]:
    """The columns each index and unique key of `bindings` holds, and partial predicates."""
    insp = inspect(s.connection())
    out: list[str] = []
    for index in insp.get_indexes("bindings"):
        out += [str(c) for c in index["column_names"]]
        out += [str(v) for v in index.get("dialect_options", {}).values()]
    for unique in insp.get_unique_constraints("bindings"):
        out += [str(c) for c in unique["column_names"]]
    return out


def test_no_index_of_bindings_holds_the_columns_a_state_change_writes(db: Database) -> None:
    """On either backend (SQLite has no HOT, but keeps the same indexes)."""
    indexed = db.transact(_indexed, write=False)
    assert "token" in indexed and "bucket" in indexed  # the unique key and the bucket index
    assert not [c for c in indexed if "state" in c or "updated_us" in c], indexed


def test_the_migration_sets_the_room_and_takes_it_back(database_url: str) -> None:
    engine = create_engine(database_url)
    pg = engine.dialect.name == "postgresql"
    try:
        migrate.upgrade(engine)
        if pg:
            options = partition_options(engine, "bindings")
            assert len(options) >= 2 and set(options) == {"fillfactor=85"}, options
        migrate.downgrade(engine, "0011_open_orders")
        if pg:
            assert set(partition_options(engine, "bindings")) == {""}
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        if pg:
            assert set(partition_options(engine, "bindings")) == {"fillfactor=85"}
    finally:
        engine.dispose()
