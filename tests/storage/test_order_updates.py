"""An order's two later writes on PostgreSQL (migration 0011_open_orders): the delivery
mark changes no indexed column, so it is a heap-only (HOT) update that writes no index
entry; the orders' partitions keep room on each page for it (half of each page since
0014_orders_room); and the open orders are still
found (redelivery and the ops snapshot read them through the partial index on
`acked_us IS NULL`) once some are acked.

With `state` in two of the orders' indexes, as before 0011, no delivery mark was HOT: each
wrote a new entry in all six of the row's indexes."""

from __future__ import annotations

from typing import Any

from numbind.registry.domain.types import EventCause, EventKind, OrderState
from numbind.registry.storage import feed, migrate, ops, order_acks, orders, principals
from numbind.registry.storage.db import Database
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.orm import Session

from tests.storage._heap import partition_options, updates
from tests.storage._plans import captured, plan_nodes
from tests.storage.test_feed_store import _binding

# Few enough that every partition's orders share one page with room to spare, whatever
# the fillfactor: what is checked is which columns the indexes hold.
ORDERS = 40


def _orders(db: Database, count: int = ORDERS) -> tuple[int, list[feed.FeedItem]]:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cu").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "pu").pk)
    mine = db.transact(lambda s: [_binding(s, plat, i) for i in range(count)])

    def append(s: Session) -> None:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in mine]
        orders.append(s, rid, new, 60.0)

    db.transact(append)
    items = db.transact(lambda s: feed.read_feed(s, plat, 0, count), write=False)
    assert len(items) == count
    return plat, items


def test_a_delivery_mark_is_a_heap_only_update(pg_db: Database) -> None:
    _, items = _orders(pg_db)

    def deliver(s: Session) -> tuple[int, int]:
        feed.mark_delivered(s, [(i.order_pk, i.token) for i in items])
        return updates(s, "orders")

    assert pg_db.transact(deliver) == (ORDERS, ORDERS)


# Enough orders that partitions fill several pages to the fillfactor (16 partitions).
FULL_PAGES = 960


def test_marking_every_order_of_full_pages_at_once_misses_at_most_one_a_page(
    pg_db: Database,
) -> None:
    """Migration 0014_orders_room's room, with no pruning to help: every order marked in one
    transaction, so no old version can be pruned to make room (as when the reissue's
    concurrent transactions hold them back). Half a page holds a new version of all but the
    last row of a full page: a marked version is 8 bytes longer (`delivered_us`) and takes a
    line pointer too. Measured here: 911 of 960 heap-only at 50, 960 at 45, 450 at 70 and 0
    at 100 (the bench's 100,000 marks were all heap-only at 50, with pruning between
    transactions). So: at most one miss per page."""
    _, items = _orders(pg_db, FULL_PAGES)

    def pages(s: Session) -> tuple[int, int]:
        row: Any = s.execute(
            text(
                "SELECT sum(n), max(n) FROM (SELECT pg_relation_size(c.oid)"
                " / current_setting('block_size')::int AS n FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'orders'::regclass) AS p"
            )
        ).one()
        return int(row[0]), int(row[1])

    total, most = pg_db.transact(pages, write=False)
    assert most >= 2  # full pages, not one part-filled page per partition

    def deliver(s: Session) -> tuple[int, int]:
        feed.mark_delivered(s, [(i.order_pk, i.token) for i in items])
        return updates(s, "orders")

    marked, hot = pg_db.transact(deliver)
    assert marked == FULL_PAGES
    assert FULL_PAGES - hot <= total, (hot, total)


def test_the_orders_partitions_keep_room_for_their_updates(pg_db: Database) -> None:
    options = partition_options(pg_db.write_engine, "orders")
    assert len(options) >= 2
    assert all("fillfactor=50" in o for o in options), options


def test_no_index_of_orders_holds_the_columns_a_delivery_mark_writes(db: Database) -> None:
    """On either backend (SQLite has no HOT, but keeps the same indexes); a partial
    index's predicate counts as well as its columns."""
    indexes = db.transact(lambda s: inspect(s.connection()).get_indexes("orders"), write=False)
    assert {i["name"] for i in indexes} >= {"ix_orders_open"}
    for index in indexes:
        named = " ".join(
            [*map(str, index["column_names"]), *map(str, index.get("dialect_options", {}).values())]
        )
        assert "state" not in named and "delivered_us" not in named, index


def test_open_orders_are_found_once_some_are_acked(db: Database) -> None:
    plat, items = _orders(db)
    db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in items]))
    acked = items[:15]

    def ack(s: Session) -> None:
        found = order_acks.orders_by_id(s, [i.order_id for i in acked])
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])

    db.transact(ack)
    far_future = 2**62
    stale = db.transact(lambda s: feed.stale_deliveries(s, plat, far_future, 100), write=False)
    assert sorted(i.order_pk for i in stale) == sorted(i.order_pk for i in items[15:])
    snap = db.transact(lambda s: ops.snapshot(s, 0), write=False)
    (mine,) = [f for f in snap.feeds if f.platform == "pu"]
    assert (mine.pending, mine.delivered, mine.overdue) == (0, ORDERS - 15, 0)


def _orders_index_names(engine: Engine) -> set[str]:
    return {str(i["name"]) for i in inspect(engine).get_indexes("orders")}


def test_the_migration_goes_back_to_the_state_indexes_and_forward_again(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "0010_local_apply")
        names = _orders_index_names(engine)
        assert {"ix_orders_state_deadline", "ix_orders_platform_state"} <= names, names
        assert "ix_orders_open" not in names
        pg = engine.dialect.name == "postgresql"
        if pg:
            assert set(partition_options(engine, "orders")) == {""}
        migrate.upgrade(engine)
        names = _orders_index_names(engine)
        assert "ix_orders_open" in names and "ix_orders_state_deadline" not in names, names
        if pg:
            assert set(partition_options(engine, "orders")) == {"fillfactor=50"}
        migrate.downgrade(engine, "0013_log_nodes_from_16")
        if pg:  # 0014_orders_room's downgrade: 0011's room again
            assert set(partition_options(engine, "orders")) == {"fillfactor=70"}
        migrate.upgrade(engine)
        if pg:
            assert set(partition_options(engine, "orders")) == {"fillfactor=50"}
    finally:
        engine.dispose()


def _open_index_names(s: Session) -> set[str]:
    """ix_orders_open and its partitions' indexes (named by PostgreSQL after the columns)."""
    rows = s.execute(
        text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename LIKE 'orders%' AND indexdef LIKE '%WHERE (acked_us IS NULL)%'"
        )
    )
    return {str(r[0]) for r in rows}


def test_the_open_orders_readers_can_use_the_partial_index(pg_db: Database) -> None:
    """Its predicate must be implied by each reader's WHERE, or the planner cannot use it:
    with sequential scans priced out, the ops snapshot and the stale-delivery search each
    find the open orders through it (at test size the planner would rather scan). As after
    a reissue, most orders are acked and the statistics know it: the feed index
    (ux_orders_feed), which also leads with the platform, holds every order."""
    plat, items = _orders(pg_db)
    pg_db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in items]))

    def ack(s: Session) -> None:
        found = order_acks.orders_by_id(s, [i.order_id for i in items[: ORDERS * 3 // 4]])
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])

    pg_db.transact(ack)
    engine = pg_db.write_engine
    with engine.connect() as conn:
        conn.execute(text("ANALYZE orders"))
        conn.commit()

    def orders_read(stmt: str) -> bool:
        # The snapshot's grouping, the stale search's cut-off: not the predicate, whose
        # absence is what this test is to catch.
        return "FROM orders" in stmt and (
            "GROUP BY orders.platform_pk" in stmt or "orders.delivered_us <" in stmt
        )

    with captured(engine, orders_read) as snapshot_sql:
        pg_db.transact(lambda s: ops.snapshot(s, 0), write=False)
    with captured(engine, orders_read) as stale_sql:
        pg_db.transact(lambda s: feed.stale_deliveries(s, plat, 2**62, 10), write=False)
    assert len(snapshot_sql) == 1 and len(stale_sql) == 1, (snapshot_sql, stale_sql)

    def indexes_read(sql: str, params: Any) -> set[str]:
        def plan(s: Session) -> set[str]:
            s.execute(text("SET LOCAL enable_seqscan = off"))
            nodes = plan_nodes(s.connection(), sql, params)
            return {
                str(n.get("Index Name", n["Node Type"]))
                for n in nodes
                if str(n.get("Relation Name", "")).startswith("orders_p")
            }

        return pg_db.transact(plan, write=False)

    wanted = pg_db.transact(_open_index_names, write=False)
    for sql, params in (*snapshot_sql, *stale_sql):
        used = indexes_read(sql, params)
        # The stale-delivery search then joins its finds to orders again by primary key.
        assert used & wanted and "Seq Scan" not in used, (used, sql)
