"""Each platform's feed (the transactional outbox: its orders by `feed_seq`, which
orders.append writes): reading it in sequence, finding delivered orders to send again,
marking deliveries, and its head.

Orders and their bindings are joined on (pk, token), the partition key they share (see
storage.models and storage.orders).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from numbind.registry.domain.types import OrderState, now_us
from numbind.registry.storage import pgorder_sets
from numbind.registry.storage.db import driver_sql
from numbind.registry.storage.models import (
    BindingRow,
    LogLeafRow,
    OrderRow,
)
from numbind.registry.storage.orders import OPEN_STATES
from numbind.registry.storage.pg_session import custom_plans, index_plans
from sqlalchemy import ColumnElement, Select, and_, bindparam, literal_column, select
from sqlalchemy.orm import Session


class FeedItem(NamedTuple):
    """One event as read. A named tuple, not a frozen dataclass: a stream builds one per
    row (tens of thousands during a reissue), and a tuple is built about six times faster."""

    seq: int
    order_pk: int
    order_id: str
    kind: int
    cause: int
    state: int
    revocation_id: str
    tenure_start_us: int | None
    created_us: int
    deadline_us: int
    key_id: str
    token: bytes
    account_ref: bytes
    bound_us: int
    binding_kind: int
    # The order's leaf in the verifiable log (None for an order made before the log).
    leaf_index: int | None = None


_FEED_COLUMNS = (
    OrderRow.feed_seq,
    OrderRow.pk,
    OrderRow.id,
    OrderRow.kind,
    OrderRow.cause,
    OrderRow.state,
    OrderRow.revocation_id,
    OrderRow.tenure_start_us,
    OrderRow.created_us,
    OrderRow.deadline_us,
    BindingRow.key_id,
    BindingRow.token,
    BindingRow.account_ref,
    BindingRow.bound_us,
    BindingRow.kind,
    # Each order's leaf (NULL for an order older than the log): a correlated sub-select, one
    # lookup of ix_log_leaves_ref per event whatever the statistics say. As an outer join,
    # PostgreSQL planned it against statistics taken before a reissue began, when the log
    # held no order leaves: a merge join over a parallel scan of every order leaf, sorted
    # on disk, 160-440 ms (under auto_explain) for a stale-delivery check that found nothing.
    select(LogLeafRow.idx)
    .where(LogLeafRow.ref == OrderRow.id, LogLeafRow.kind == "order")
    .limit(1)
    .scalar_subquery(),
)


# A co-located join: a binding and its orders share a token.
_BINDING_OF_ORDER = and_(BindingRow.pk == OrderRow.binding_pk, BindingRow.token == OrderRow.token)


def page_limit(limit: int) -> ColumnElement[Any]:
    """`limit` written into the SQL, not a parameter: PostgreSQL's generic plan for
    `LIMIT $n` ran the same nested loops in 130-270 ms a page of 200, against 4 ms with the
    literal (EXPLAIN put the time in the Limit node's start). So only a positive int."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: got {limit!r}, want an int of at least 1")
    return literal_column(str(limit))


@functools.lru_cache(maxsize=8)
def _read_feed(limit: int) -> Select[Any]:
    """The feed read for pages of `limit` (one statement per page size; the stream uses
    one). Built once: every stream reads a page on every wake-up (hundreds a second in a
    reissue), and building the join cost as much as running it. A range scan of
    `ux_orders_feed` (on PostgreSQL merged across the partitions), each order's binding
    and log leaf probed by key."""
    return (
        select(*_FEED_COLUMNS)
        .select_from(OrderRow)
        .join(BindingRow, _BINDING_OF_ORDER)
        .where(
            OrderRow.platform_pk == bindparam("platform_pk"),
            OrderRow.feed_seq > bindparam("after_seq"),
        )
        .order_by(OrderRow.feed_seq)
        .limit(page_limit(limit))
    )


def read_feed(session: Session, platform_pk: int, after_seq: int, limit: int) -> list[FeedItem]:
    """Up to `limit` of the platform's events after `after_seq`, in sequence."""
    statement = _read_feed(limit)
    index_plans(session)  # a page's probes, whatever the statistics say
    rows: Any = session.execute(statement, {"platform_pk": platform_pk, "after_seq": after_seq})
    return [FeedItem(*r) for r in rows]


def stale_deliveries(
    session: Session, platform_pk: int, delivered_before_us: int, limit: int
) -> list[FeedItem]:
    """Delivered, unacked orders whose visibility timeout has passed: send them again, at
    most `limit` (any of them; the caller asks again after a full page), in feed order.

    One statement: the platform's open orders through their partial index (ix_orders_open),
    each joined to its binding, the limit bounding the probes whatever the plan. (When each
    order's feed entry was a row of its own, the stale orders were chosen in a sub-select
    first: as one join, PostgreSQL hashed every partition of the feed.) They are put in feed
    order here, not by the SQL: with sorts priced out (index_plans), an `ORDER BY feed_seq`
    had the planner walk the platform's whole feed index to avoid one."""
    index_plans(session)
    rows: Any = session.execute(
        select(*_FEED_COLUMNS)
        .select_from(OrderRow)
        .join(BindingRow, _BINDING_OF_ORDER)
        .where(
            OrderRow.platform_pk == platform_pk,
            OrderRow.acked_us.is_(None),  # the open orders' partial index (ix_orders_open)
            OrderRow.state == int(OrderState.DELIVERED),
            OrderRow.delivered_us < delivered_before_us,
        )
        .limit(page_limit(limit))
    )
    return sorted((FeedItem(*r) for r in rows), key=attrgetter("seq"))


def mark_delivered(session: Session, orders: Sequence[tuple[int, bytes]]) -> None:
    """Open orders (pk, token as read) become DELIVERED."""
    if not orders:
        return
    now = now_us()
    custom_plans(session)
    conn = session.connection()
    pks = [pk for pk, _ in orders]
    if conn.dialect.name == "postgresql":
        # One statement routed by token (storage.pgsets); an order a re-key moved to its
        # binding's new token since it was read (or one no longer open) goes by pk alone,
        # in one more statement.
        done = pgorder_sets.mark_delivered(
            conn, orders, int(OrderState.DELIVERED), OPEN_STATES, now
        )
        rest = [pk for pk in pks if pk not in done]
        if rest:
            pgorder_sets.mark_delivered_by_pk(
                conn, rest, int(OrderState.DELIVERED), OPEN_STATES, now
            )
        return
    conn.exec_driver_sql(
        driver_sql(
            conn,
            "UPDATE orders SET state = ?, delivered_us = ? WHERE pk = ? AND state IN (?, ?)",
        ),
        [(int(OrderState.DELIVERED), now, pk, *OPEN_STATES) for pk in pks],
    )


def feed_head(session: Session, platform_pk: int) -> int:
    """The platform's last feed sequence (0: none, or no such platform). Driver SQL: every
    heartbeat of every stream reads it."""
    conn = session.connection()
    head = conn.exec_driver_sql(
        driver_sql(conn, "SELECT feed_head FROM principals WHERE pk = ?"), (platform_pk,)
    ).scalar()
    return int(head or 0)
