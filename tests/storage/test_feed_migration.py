"""Migration 0015_feed_in_orders: each order takes its feed entry's place (`feed_seq`) and
the feed_events table goes; its downgrade builds the table again from the orders. Both ways
on orders the storage layer wrote, at two platforms, some acked."""

from __future__ import annotations

import pytest
from numbind.registry.domain.types import EventCause, EventKind, OrderState
from numbind.registry.storage import feed, migrate, order_acks, orders, principals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.storage.test_feed_store import _binding

BEFORE = "0014_orders_room"
Entry = tuple[int, int, int, bytes, int]  # platform pk, seq, order pk, token, created


def _fill(db: Database) -> list[int]:
    """Orders at two platforms in three appends (feeds interleaved), a few acked."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "c-mig").pk)
    plats = db.transact(
        lambda s: [principals.register(s, "platform", f"p-mig-{i}").pk for i in range(2)]
    )
    mine = db.transact(lambda s: [_binding(s, plats[i % 2], i) for i in range(18)])
    for part in (mine[:5], mine[5:11], mine[11:]):

        def append(s: Session, part: list[StoredBinding] = part) -> None:
            rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in part]
            orders.append(s, rid, new, 60.0)

        db.transact(append)
    acked = db.transact(lambda s: feed.read_feed(s, plats[0], 0, 3), write=False)

    def ack(s: Session) -> None:
        found = order_acks.orders_by_id(s, [i.order_id for i in acked])
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])

    db.transact(ack)
    return plats


def _orders_feed(engine: Engine) -> list[Entry]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT platform_pk, feed_seq, pk, token, created_us FROM orders ORDER BY 1, 2")
        )
        return [(p, q, o, bytes(t), c) for p, q, o, t, c in rows]


def _feed_events(engine: Engine) -> list[Entry]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT platform_pk, seq, order_pk, token, created_us FROM feed_events"
                " ORDER BY 1, 2"
            )
        )
        return [(p, q, o, bytes(t), c) for p, q, o, t, c in rows]


def _partition_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.relname, count(*) FROM pg_inherits i JOIN pg_class p"
                " ON p.oid = i.inhparent WHERE p.relname IN ('orders', 'feed_events')"
                " GROUP BY p.relname"
            )
        )
        return {str(name): int(n) for name, n in rows}


def test_feed_places_move_into_the_orders_and_back(db: Database) -> None:
    plats = _fill(db)
    engine = db.write_engine
    places = _orders_feed(engine)
    # Each platform's feed: gap-free from 1, in the order its orders were appended.
    for p in plats:
        assert [q for pk, q, *_ in places if pk == p] == list(range(1, 10))
    pg = engine.dialect.name == "postgresql"

    migrate.downgrade(engine, BEFORE)
    columns = {c["name"] for c in inspect(engine).get_columns("orders")}
    assert "feed_seq" not in columns
    assert _feed_events(engine) == places
    if pg:  # hash-partitioned by token again, as many partitions as orders
        counts = _partition_counts(engine)
        assert counts["feed_events"] == counts["orders"] >= 2

    migrate.upgrade(engine)
    assert "feed_events" not in inspect(engine).get_table_names()
    assert _orders_feed(engine) == places
    # The feed reads as it did, acked orders included (replay does not skip them).
    items = db.transact(lambda s: feed.read_feed(s, plats[0], 0, 100), write=False)
    assert [(i.seq, i.order_pk) for i in items] == [
        (q, o) for p, q, o, *_ in places if p == plats[0]
    ]


def test_a_feed_place_is_taken_once(db: Database) -> None:
    """(platform, feed_seq, token) is unique: the same place twice for one token is
    refused (per partition on PostgreSQL, which is what the token in the key allows)."""
    _fill(db)
    with pytest.raises(IntegrityError), db.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (pk, id, revocation_id, platform_pk, binding_pk, token,"
                " kind, cause, state, outcome, reason, created_us, deadline_us, feed_seq)"
                " SELECT pk + 1000, 'again', revocation_id, platform_pk, binding_pk, token,"
                " kind, cause, state, outcome, reason, created_us, deadline_us, feed_seq"
                " FROM orders ORDER BY pk LIMIT 1"
            )
        )
