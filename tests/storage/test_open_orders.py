"""A binding's open orders as a holder query reads them (storage.orders
.open_orders_for_bindings): the right order per binding, still found after its binding's
token moved (storage.dependents), and on PostgreSQL read from the tokens' partitions only."""

from __future__ import annotations

from dataclasses import replace

from numbind.registry.domain.types import OrderState
from numbind.registry.storage import dependents, orders
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database, driver_sql
from sqlalchemy.orm import Session

from tests.storage._plans import captured
from tests.storage.test_feed_store import _with_orders

NOW = 2_000_000_000_000_000


def test_each_binding_gets_its_own_open_order_and_none_without(db: Database) -> None:
    _, stored, rid = _with_orders(db, 6, ordered=5)
    got = db.transact(lambda s: orders.open_orders_for_bindings(s, stored, NOW), write=False)
    # Deadlines are 60 s after creation: at NOW, far later, every open order is OVERDUE.
    assert got == {b.pk: (rid, int(OrderState.OVERDUE)) for b in stored[:-1]}
    early = db.transact(lambda s: orders.open_orders_for_bindings(s, stored[:2], 0), write=False)
    assert early == {b.pk: (rid, int(OrderState.PENDING)) for b in stored[:2]}


def test_an_order_is_found_after_its_binding_moved_token(db: Database) -> None:
    _, stored, rid = _with_orders(db, 3, ordered=2)
    first = stored[0]
    new_token = b"\x42" * 32

    def move(s: Session) -> StoredBinding:
        conn = s.connection()
        conn.exec_driver_sql(
            driver_sql(conn, "UPDATE bindings SET token = ? WHERE pk = ?"), (new_token, first.pk)
        )
        dependents.move_dependents(conn, [(first.pk, new_token)])
        token = replace(first.binding.token, value=new_token)
        return replace(first, binding=replace(first.binding, token=token))

    moved = db.transact(move)
    got = db.transact(lambda s: orders.open_orders_for_bindings(s, [moved], 0), write=False)
    assert got == {first.pk: (rid, int(OrderState.PENDING))}


def test_postgresql_reads_only_the_tokens_partitions(pg_db: Database) -> None:
    """By binding pk alone the read probed all 16 partitions of `orders`; naming the tokens
    prunes the others at planning."""
    _, stored, _ = _with_orders(pg_db, 8, ordered=7)
    one = [stored[0]]
    with captured(pg_db.read_engine, lambda sql: "FROM orders" in sql) as seen:
        pg_db.transact(lambda s: orders.open_orders_for_bindings(s, one, 0), write=False)
    assert len(seen) == 1
    stmt, params = seen[0]
    with pg_db.read_engine.connect() as conn:
        plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + stmt, params)]
    scanned = {word for line in plan for word in line.split() if word.startswith("orders_p")}
    assert len(scanned) == 1, plan
