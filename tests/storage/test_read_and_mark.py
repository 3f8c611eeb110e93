"""A stream's page read and its deliveries marked in one go (storage.feed.read_and_mark):
the page `read_feed` gives, as it was before the marks, and exactly its open orders marked
DELIVERED (on PostgreSQL in one statement)."""

from __future__ import annotations

from numbind.registry.domain.types import OrderState
from numbind.registry.storage import feed, order_acks
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import OrderRow
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.storage._plans import captured
from tests.storage.test_feed_store import _with_orders

SIZE = 30


def _states(db: Database) -> dict[int, tuple[int, bool]]:
    def read(s: Session) -> dict[int, tuple[int, bool]]:
        rows = s.execute(select(OrderRow.pk, OrderRow.state, OrderRow.delivered_us))
        return {int(pk): (int(state), d is not None) for pk, state, d in rows}

    return db.transact(read, write=False)


def test_a_page_is_read_as_it_was_and_its_open_orders_marked_delivered(db: Database) -> None:
    plat, _, _ = _with_orders(db, SIZE)
    before = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE), write=False)
    # Acked already: in the page, not marked again.
    done = before[12:15]

    def ack(s: Session) -> None:
        found = order_acks.orders_by_id(s, [i.order_id for i in done])
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])

    db.transact(ack)
    acked = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE), write=False)
    with captured(db.write_engine, lambda sql: "orders" in sql) as seen:
        page = db.transact(lambda s: feed.read_and_mark(s, plat, 10, 15))
    assert page == acked[10:25]
    if db.write_engine.dialect.name == "postgresql":
        assert len(seen) == 1, seen  # the read and the marks: one statement
    states = _states(db)
    done_pks = {i.order_pk for i in done}
    page_pks = {i.order_pk for i in page}
    for item in acked:
        state, delivered = states[item.order_pk]
        if item.order_pk in done_pks:
            assert (state, delivered) == (int(OrderState.DONE), False)
        elif item.order_pk in page_pks:
            assert (state, delivered) == (int(OrderState.DELIVERED), True)
        else:
            assert (state, delivered) == (int(OrderState.PENDING), False)
    # Read again: the same events, now delivered; the marks' time moves on.
    again = db.transact(lambda s: feed.read_and_mark(s, plat, 10, 15))
    assert [i.seq for i in again] == [i.seq for i in page]
    assert {i.state for i in again if i.order_pk not in done_pks} == {int(OrderState.DELIVERED)}
