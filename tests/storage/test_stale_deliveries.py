"""storage.feed.stale_deliveries: delivered, unacked orders whose visibility timeout has
passed, in feed order, a page at a time; on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from typing import Any

from numbind.registry.domain.types import EventCause, EventKind, OrderState
from numbind.registry.storage import feed, order_acks, orders, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import OrderRow
from sqlalchemy import update

from tests.storage.test_feed_store import _binding

SIZE = 30


def test_only_orders_delivered_before_the_cutoff_and_unacked_come_again_a_page_at_a_time(
    db: Database,
) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "ps").pk)
    other = db.transact(lambda s: principals.register(s, "platform", "po").pk)
    mine = db.transact(lambda s: [_binding(s, plat, i) for i in range(SIZE)])
    theirs = db.transact(lambda s: [_binding(s, other, SIZE + i) for i in range(3)])

    def append(s: Any) -> None:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in mine + theirs]
        orders.append(s, rid, new, 60.0)

    db.transact(append)
    items = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE), write=False)
    assert len(items) == SIZE
    db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in items]))
    peer = db.transact(lambda s: feed.read_feed(s, other, 0, 10), write=False)
    db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in peer]))
    # Delivered long ago: all but the last five (delivered just now); of those, two acked.
    old = [i.order_pk for i in items[:-5]]
    db.transact(
        lambda s: s.execute(update(OrderRow).where(OrderRow.pk.in_(old)).values(delivered_us=10))
    )
    db.transact(
        lambda s: s.execute(
            update(OrderRow)
            .where(OrderRow.pk.in_([i.order_pk for i in peer]))
            .values(delivered_us=10)
        )
    )
    acked = items[:2]

    def ack(s: Any) -> None:
        found = order_acks.orders_by_id(s, [i.order_id for i in acked])
        order_acks.record_acks(s, [(t, int(OrderState.DONE), 1, "") for t in found.values()])

    db.transact(ack)
    want = [i.seq for i in items[2:-5]]
    page = db.transact(lambda s: feed.stale_deliveries(s, plat, 1_000, 10), write=False)
    # A page of the stale ones, in feed order, each with its order's own fields.
    assert len(page) == 10 and set(i.seq for i in page) <= set(want)
    assert [i.seq for i in page] == sorted(i.seq for i in page)
    by_seq = {i.seq: i for i in items}
    assert all(i._replace(state=0) == by_seq[i.seq]._replace(state=0) for i in page)
    everything = db.transact(lambda s: feed.stale_deliveries(s, plat, 1_000, 1_000), write=False)
    assert [i.seq for i in everything] == want
    # Sent again (marked delivered now): no longer stale.
    db.transact(lambda s: feed.mark_delivered(s, [(i.order_pk, i.token) for i in everything]))
    assert db.transact(lambda s: feed.stale_deliveries(s, plat, 1_000, 1_000), write=False) == []
