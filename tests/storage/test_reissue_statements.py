"""The reissue path's writes are set-based on PostgreSQL: the statements a batch of orders,
its deliveries and its acks execute do not grow with the batch (storage.pgsets), and every
row still lands. On SQLite (executemany, no round trips) only the outcome is checked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from numbind.registry.domain.types import BindingState, EventCause, EventKind, OrderState
from numbind.registry.storage import feed, migrate, orders, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow, OrderRow
from sqlalchemy import event, func, select

from tests.storage.test_feed_store import _binding

SIZE = 60


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.write_engine)
    yield database
    database.close()


class _Counter:
    """Statements executed on the write engine, an executemany counting one per row."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._engine = db.write_engine
        event.listen(self._engine, "before_cursor_execute", self._on)

    def _on(self, conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if "orders" in stmt or "bindings" in stmt or "feed_events" in stmt:
            self.count += len(params) if many else 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on)


def test_orders_deliveries_and_acks_take_one_statement_per_batch(db: Database) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "ps").pk)
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(SIZE)])
    pg = db.write_engine.dialect.name == "postgresql"
    counter = _Counter(db)
    try:

        def append(s: Any) -> str:
            rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in stored]
            orders.append(s, rid, new, 60.0)
            return rid

        rid = db.transact(append)
        appended = counter.count
        if pg:  # lock, orders, feed entries, REVOKING: none per row
            assert appended <= 5, appended
        items = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE))
        before = counter.count
        db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in items]))
        delivered = counter.count - before
        before = counter.count
        db.transact(
            lambda s: orders.record_acks(
                s,
                [
                    (t, int(OrderState.DONE), 1, "")
                    for t in orders.orders_by_id(s, [i.order_id for i in items]).values()
                ],
            )
        )
        acked = counter.count - before
    finally:
        counter.close()

    states = db.transact(
        lambda s: s.execute(
            select(OrderRow.state, func.count())
            .where(OrderRow.revocation_id == rid)
            .group_by(OrderRow.state)
        ).all()
    )
    assert states == [(int(OrderState.DONE), SIZE)]
    revoked = db.transact(
        lambda s: s.scalar(
            select(func.count()).where(BindingRow.state == int(BindingState.REVOKED))
        )
    )
    assert revoked == SIZE
    assert len(items) == SIZE
    if pg:  # marks; the ack's lookup, order acks, binding states
        assert delivered == 1, delivered
        assert acked <= 3, acked
