"""On PostgreSQL a stream's feed read keeps one plan shape whatever the statistics say
(storage.pg_session.index_plans): probes of each table's primary key per feed entry. Planned on
statistics from before a reissue, it once joined each entry to a sequential scan of every
`orders` partition. Other statements keep their prepared, generic plans (planning each cost
a holder query 1-2 ms at p50)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from numbind.registry.domain.types import AckOutcome, OrderState
from numbind.registry.storage import feed, order_acks, principals
from numbind.registry.storage.db import Database
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.storage.test_feed_store import _with_orders

# psycopg prepares a statement at its 5th run on a connection; PostgreSQL then plans the
# first 5 runs of the prepared statement for their parameters and may switch to a generic
# plan from the 6th. 15 runs are past both.
RUNS = 15

# Plan nodes that read a whole table or a whole side of a join.
WHOLE = {"Seq Scan", "Hash Join", "Merge Join", "Materialize", "Bitmap Heap Scan", "Hash"}


def _nodes(plan: dict[str, Any]) -> set[str]:
    found = {str(plan["Node Type"])}
    for child in plan.get("Plans", []):
        found |= _nodes(child)
    return found


def _feed_plan(s: Session, plat: int) -> set[str]:
    conn = s.connection()
    compiled = feed._read_feed(10).compile(dialect=conn.dialect)
    params = {**compiled.params, "platform_pk": plat, "after_seq": 0}
    row = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), params).scalar_one()
    doc = row if isinstance(row, list) else json.loads(row)
    return _nodes(doc[0]["Plan"])


def test_a_feed_read_probes_indexes_whatever_the_cost_model_says(pg_db: Database) -> None:
    plat, _, _ = _with_orders(pg_db, 6)

    def plans(s: Session) -> tuple[set[str], set[str], str, int]:
        # Index probes priced out of reach: the cost model of a planner whose statistics
        # say the tables are tiny.
        s.execute(text("SET LOCAL random_page_cost = 100000"))
        s.execute(text("SET LOCAL cpu_index_tuple_cost = 1000"))
        before = _feed_plan(s, plat)
        for _ in range(RUNS):
            assert len(feed.read_feed(s, plat, 0, 10)) == 6
        mode = str(s.execute(text("SHOW plan_cache_mode")).scalar_one())
        generic = "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements"
        cached = int(s.execute(text(generic + " WHERE statement LIKE '%feed_seq%'")).scalar_one())
        return before, _feed_plan(s, plat), mode, cached

    before, after, mode, cached = pg_db.transact(plans, write=False)
    assert before & WHOLE, before  # the sabotaged cost model does pick whole-table plans
    assert not after & WHOLE, after
    assert {"Index Scan", "Nested Loop", "Limit"} <= after
    # One plan shape at any size: planned once per connection, not on every read.
    assert mode == "force_generic_plan"
    assert cached > 0


def test_the_stale_delivery_search_probes_indexes_too(pg_db: Database) -> None:
    plat, _, _ = _with_orders(pg_db, 2)

    def settings(s: Session) -> list[str]:
        feed.stale_deliveries(s, plat, 0, 10)
        names = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin", "plan_cache_mode")
        return [str(s.execute(text(f"SHOW {n}")).scalar_one()) for n in names]

    assert pg_db.transact(settings, write=False) == ["off", "off", "off", "force_generic_plan"]


def test_a_feed_read_keeps_the_page_size_it_was_asked_for(db: Database) -> None:
    plat, _, _ = _with_orders(db, 5)
    sizes = db.transact(
        lambda s: [len(feed.read_feed(s, plat, 0, n)) for n in (1, 2, 3, 10, 2)], write=False
    )
    assert sizes == [1, 2, 3, 5, 2]
    # The page size is written into the SQL: only a positive int gets there.
    with pytest.raises(ValueError, match="limit"):
        db.transact(lambda s: feed.read_feed(s, plat, 0, 0), write=False)


def test_planner_settings_go_once_per_transaction(pg_db: Database) -> None:
    """An ack's lookup and its writes both ask for custom plans, a stream's transaction may
    read twice: each setting reaches the server once per transaction, and again after
    another setting replaced it or in a savepoint."""
    plat, _, _ = _with_orders(pg_db, 3)
    sent: list[str] = []

    def record(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if "plan_cache_mode" in stmt:
            sent.append("index" if "enable_seqscan" in stmt else "custom")

    def ack_all(s: Session) -> None:
        items = feed.read_feed(s, plat, 0, 10)
        feed.read_feed(s, plat, 0, 10)
        targets = order_acks.orders_by_id(s, [i.order_id for i in items])
        acks = [(t, int(OrderState.DONE), int(AckOutcome.UNBOUND), "") for t in targets.values()]
        order_acks.record_acks(s, acks)
        feed.read_feed(s, plat, 0, 10)
        # A savepoint's rollback would undo settings sent in it: they are sent there again.
        with s.begin_nested():
            feed.read_feed(s, plat, 0, 10)

    event.listen(pg_db.write_engine, "before_cursor_execute", record)
    try:
        pg_db.transact(ack_all)
        pg_db.transact(lambda s: feed.read_feed(s, plat, 0, 10))
    finally:
        event.remove(pg_db.write_engine, "before_cursor_execute", record)
    assert sent == ["index", "custom", "index", "index", "index"]


def test_other_statements_keep_their_generic_plans(pg_db: Database) -> None:
    pks = pg_db.transact(lambda s: [principals.register(s, "platform", n).pk for n in "abc"])

    def reads(s: Session) -> int:
        for _ in range(RUNS):
            assert len(principals.names_by_pks(s, set(pks))) == len(pks)
        generic = "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements"
        return int(s.execute(text(generic)).scalar_one())

    assert pg_db.transact(reads, write=False) > 0
