"""PostgreSQL: the planner's statistics follow tables that grow faster than autovacuum looks
(services.planner_stats, storage.planner_stats). A stale table is found and analyzed once,
by one process at a time; a feed read's cached plan is made again afterwards, a range scan
of each partition's feed index (ux_orders_feed). The delivery marks' plan on statistics
taken when the orders so far had been acked was a hash of every open order (seen in the
reissue bench), through the index that held `state`; since migration 0011_open_orders no
index holds it, and the marks probe the primary key on those statistics too. The feed read's
bad plan of the bench (probes of `orders` through its (id, token) key on the token alone,
when a feed entry was a row of its own) was not reproduced at this size.
"""

from __future__ import annotations

import threading
from typing import Any

from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventCause,
    EventKind,
    OrderState,
    Token,
)
from numbind.registry.services.planner_stats import StatisticsKeeper
from numbind.registry.storage import feed, orders, pgsets, planner_stats, principals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow
from numbind.registry.storage.pg_session import custom_plans, index_plans
from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from tests.storage._plans import plan_nodes
from tests.storage.test_feed_store import T0, binding_row

FLOOR = 50


def _grow(db: Database, carrier: int, plat: int, first: int, count: int) -> None:
    """`count` bindings of `plat` from bucket `first` on, a REVOKE order and a feed entry
    each, in one transaction whose table statistics reach the shared counters at commit."""

    def tx(s: Session) -> None:
        rows = [binding_row(plat, i) for i in range(first, first + count)]
        made = s.execute(insert(BindingRow).returning(BindingRow.pk, BindingRow.token), rows)
        stored = [
            StoredBinding(
                pk,
                plat,
                Binding(Token("0123456789abcdef", tok), b"acct", T0, BindingKind.LOGIN),
                BindingState.ACTIVE,
            )
            for pk, tok in made
        ]
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in stored]
        orders.append(s, rid, new, 60.0)
        s.execute(text("SELECT pg_stat_force_next_flush()"))

    db.transact(tx)


def _setup(db: Database) -> tuple[int, int]:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "c-stats").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "p-stats").pk)
    # Statistics as a new store's first ANALYZE leaves them: every table empty.
    db.transact(lambda s: s.execute(text("ANALYZE")))
    return carrier, plat


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _prepare_feed_read(conn: Connection) -> None:
    """The stream's feed read as a named prepared statement, planned as the stream's is
    (storage.pg_session.index_plans: index probes, one generic plan) for this transaction."""
    index_plans(Session(bind=conn))
    compiled = feed._read_feed(200).compile(dialect=conn.dialect)
    sql = str(compiled)
    for name, value in compiled.params.items():
        place = {"platform_pk": "$1", "after_seq": "$2"}.get(name, _literal(value))
        sql = sql.replace(f"%({name})s", place)
    conn.exec_driver_sql(f"PREPARE feed_read (integer, bigint) AS {sql}")


def _orders_indexes(conn: Connection, plat: int) -> set[str]:
    """The indexes the prepared feed read's plan probes `orders` partitions through."""
    return {
        str(node.get("Index Name", node["Node Type"]))
        for node in plan_nodes(conn, f"EXECUTE feed_read({plat}, 0)")
        if str(node.get("Relation Name", "")).startswith("orders_p")
    }


def test_a_grown_table_is_analyzed_once_and_the_feed_read_replanned(pg_db: Database) -> None:
    carrier, plat = _setup(pg_db)
    keeper = StatisticsKeeper(pg_db, floor_rows=FLOOR)
    with pg_db.write_engine.connect() as conn:
        _grow(pg_db, carrier, plat, 0, 16)  # a first chunk's few orders
        _prepare_feed_read(conn)
        conn.exec_driver_sql(f"EXECUTE feed_read({plat}, 0)")  # planned now, and kept
        _grow(pg_db, carrier, plat, 16, 3000)
        stale = pg_db.transact(lambda s: planner_stats.stale(s, FLOOR))
        assert any(".orders_p" in t for t in stale), stale

        analyzed = keeper.refresh()

        assert set(stale) <= set(analyzed), (stale, analyzed)
        counted = pg_db.transact(
            lambda s: s.execute(
                text(
                    "SELECT sum(c.reltuples) FROM pg_inherits i JOIN pg_class c"
                    " ON c.oid = i.inhrelid WHERE i.inhparent = 'orders'::regclass"
                )
            ).scalar_one()
        )
        assert int(counted) == 3016  # small partitions: ANALYZE counts every row
        # Nothing changed since: the next round analyzes nothing.
        assert keeper.refresh() == []
        # The cached plan went with the old statistics: each partition by its feed index.
        used = _orders_indexes(conn, plat)
        assert used and all("feed_seq" in name for name in used), used
        conn.rollback()


def test_one_process_analyzes_at_a_time(pg_db: Database) -> None:
    carrier, plat = _setup(pg_db)
    _grow(pg_db, carrier, plat, 0, 2000)
    keeper = StatisticsKeeper(pg_db, floor_rows=FLOOR)
    held = threading.Event()
    release = threading.Event()

    def other_process(s: Session) -> None:
        assert planner_stats.claim(s)
        held.set()
        release.wait(10)

    holder = threading.Thread(target=lambda: pg_db.transact(other_process))
    holder.start()
    try:
        assert held.wait(10)
        assert keeper.refresh() == []  # the other round holds the lock
    finally:
        release.set()
        holder.join()
    assert keeper.refresh() != []  # then this one takes its turn


def test_delivery_marks_probe_the_primary_key_even_on_stale_statistics(pg_db: Database) -> None:
    carrier, plat = _setup(pg_db)
    # Statistics taken mid-reissue, when the orders written so far had been acked ...
    _grow(pg_db, carrier, plat, 0, 300)
    done = int(OrderState.DONE)
    pg_db.transact(lambda s: s.execute(text(f"UPDATE orders SET state = {done}")))
    pg_db.transact(lambda s: s.execute(text("ANALYZE orders")))
    # ... then the next chunks' orders, all open.
    _grow(pg_db, carrier, plat, 300, 6000)
    page = pg_db.transact(
        lambda s: s.execute(text("SELECT pk, token FROM orders WHERE state = 0 LIMIT 500")).all()
    )
    sql = (
        "UPDATE orders AS o SET state = %s, delivered_us = %s"
        f" FROM {pgsets.unnest_params('bigint', 'bytea')} AS v(pk, token)"
        " WHERE o.pk = v.pk AND o.token = v.token AND o.state = ANY(%b::smallint[])"
        " RETURNING o.pk"
    )
    params = (1, T0, [r[0] for r in page], [r[1] for r in page], list(orders.OPEN_STATES))

    def plan(s: Session) -> set[str]:
        custom_plans(s)  # as storage.feed.mark_delivered plans it
        return {str(n["Node Type"]) for n in plan_nodes(s.connection(), sql, params)}

    # On those statistics, with (state, deadline_us) and (platform_pk, state) indexed,
    # every open order of every partition was hashed for each page until the keeper ran.
    before = pg_db.transact(plan, write=False)
    assert "Hash Join" not in before and "Nested Loop" in before, before
    StatisticsKeeper(pg_db, floor_rows=FLOOR).refresh()
    after = pg_db.transact(plan, write=False)
    assert "Hash Join" not in after and "Nested Loop" in after, after


def test_the_keeper_samples_coarsely(pg_db: Database) -> None:
    """Its ANALYZE keeps histograms of STATISTICS_TARGET + 1 bounds at most (the server's
    default of 100 would keep up to 101 for a column of 3,000 distinct values)."""
    carrier, plat = _setup(pg_db)
    _grow(pg_db, carrier, plat, 0, 3000)
    analyzed = StatisticsKeeper(pg_db, floor_rows=FLOOR).refresh()
    assert any(".orders_p" in t for t in analyzed), analyzed
    bounds = pg_db.transact(
        lambda s: s.execute(
            text(
                "SELECT tablename, array_length(histogram_bounds::text::text[], 1)"
                " FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename LIKE 'orders\\_p%' AND attname = 'pk'"
            )
        ).all(),
        write=False,
    )
    assert len(bounds) >= 2, bounds
    assert all(1 < n <= planner_stats.STATISTICS_TARGET + 1 for _, n in bounds), bounds
    # Outside the keeper's transaction the server's own target holds.
    target = pg_db.transact(
        lambda s: s.execute(text("SHOW default_statistics_target")).scalar_one(), write=False
    )
    assert int(target) != planner_stats.STATISTICS_TARGET
