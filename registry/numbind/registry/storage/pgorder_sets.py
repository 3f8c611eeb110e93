"""PostgreSQL: an order's writes after it is created, a batch per statement: its delivery
mark, finding the orders an ack names, and recording acks (storage.feed and
storage.order_acks call these on PostgreSQL; SQLite keeps its executemany).

As in storage.pgsets (which explains the arrays behind sub-selects): each batch is one
statement joined on (pk, token) or (id, token), so each row routes to its own partition,
and the writes return what they touched; a row a re-key moved since it was read is written
by pk alone, in one more statement (`*_by_pk`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numbind.registry.storage.pgsets import unnest_params
from sqlalchemy import Connection

__all__ = [
    "ack_open_orders",
    "mark_delivered",
    "mark_delivered_by_pk",
    "orders_by_id_token",
    "record_order_acks",
    "record_order_acks_by_pk",
]


def orders_by_id_token(
    conn: Connection, pairs: Sequence[tuple[str, bytes]], columns: str
) -> list[Any]:
    """`columns` of the orders (id, token), locked until the transaction ends (an ack judges
    them: storage.order_acks.orders_by_id): each pair probes one partition's unique index
    on (id, token), where an id alone probes all of them."""
    return list(
        conn.exec_driver_sql(
            f"SELECT {columns} FROM {unnest_params('text', 'bytea')} AS v(id, token)"
            " JOIN orders AS o ON o.id = v.id AND o.token = v.token FOR UPDATE OF o",
            ([i for i, _ in pairs], [t for _, t in pairs]),
        )
    )


def ack_open_orders(
    conn: Connection,
    platform_pk: int,
    rows: Sequence[tuple[str, bytes, int, int, str, bool]],
    notice_kind: int,
    columns: str,
    now: int,
) -> list[Any]:
    """(id, token, state, outcome, reason, is a notice's outcome) of acks: the platform's
    open orders among them whose kind fits the outcome (a notice's NOTED, an order's any
    other) get `state`, `outcome`, `reason` and `acked_us`, in one statement that finds
    each by its (id, token) index; returns their `columns` as written. The rest (moved by
    a re-key, already acked, another platform's, unknown, the wrong outcome) are left for
    the caller to look up and judge."""
    cols = list(zip(*rows, strict=True))
    return list(
        conn.exec_driver_sql(
            "UPDATE orders AS o SET state = v.state, outcome = v.outcome, reason = v.reason,"
            " acked_us = %s"
            f" FROM {unnest_params('text', 'bytea', 'smallint', 'smallint', 'text', 'boolean')}"
            " AS v(id, token, state, outcome, reason, notice)"
            " WHERE o.id = v.id AND o.token = v.token AND o.platform_pk = %s"
            " AND o.acked_us IS NULL AND (o.kind = %s) = v.notice"
            f" RETURNING {columns}",
            (now, *(list(c) for c in cols), platform_pk, notice_kind),
        )
    )


def record_order_acks(
    conn: Connection, rows: Sequence[tuple[int, bytes, int, int, str]], now: int
) -> set[int]:
    """(pk, token, state, outcome, reason) of orders; returns the pks written."""
    cols = list(zip(*rows, strict=True))
    result = conn.exec_driver_sql(
        "UPDATE orders AS o SET state = v.state, outcome = v.outcome, reason = v.reason,"
        " acked_us = %s"
        f" FROM {unnest_params('bigint', 'bytea', 'smallint', 'smallint', 'text')}"
        " AS v(pk, token, state, outcome, reason)"
        " WHERE o.pk = v.pk AND o.token = v.token RETURNING o.pk",
        (now, *(list(c) for c in cols)),
    )
    return {pk for (pk,) in result}


def record_order_acks_by_pk(
    conn: Connection, rows: Sequence[tuple[int, int, int, str]], now: int
) -> None:
    """(pk, state, outcome, reason) of orders `record_order_acks` did not match at their
    token (a re-key moved them), by pk alone, in one statement."""
    cols = list(zip(*rows, strict=True))
    conn.exec_driver_sql(
        "UPDATE orders AS o SET state = v.state, outcome = v.outcome, reason = v.reason,"
        " acked_us = %s"
        f" FROM {unnest_params('bigint', 'smallint', 'smallint', 'text')}"
        " AS v(pk, state, outcome, reason) WHERE o.pk = v.pk",
        (now, *(list(c) for c in cols)),
    )


def mark_delivered(
    conn: Connection,
    pairs: Sequence[tuple[int, bytes]],
    state: int,
    open_states: Sequence[int],
    now: int,
) -> set[int]:
    """Open orders (pk, token) become `state` (DELIVERED); returns the pks written."""
    result = conn.exec_driver_sql(
        "UPDATE orders AS o SET state = %s, delivered_us = %s"
        f" FROM {unnest_params('bigint', 'bytea')} AS v(pk, token)"
        " WHERE o.pk = v.pk AND o.token = v.token AND o.state = ANY(%b::smallint[])"
        " RETURNING o.pk",
        (state, now, [p for p, _ in pairs], [t for _, t in pairs], list(open_states)),
    )
    return {pk for (pk,) in result}


def mark_delivered_by_pk(
    conn: Connection, pks: Sequence[int], state: int, open_states: Sequence[int], now: int
) -> None:
    """The orders `mark_delivered` did not match at their token (moved by a re-key, or no
    longer open), by pk alone, in one statement."""
    conn.exec_driver_sql(
        "UPDATE orders SET state = %s, delivered_us = %s"
        " WHERE pk = ANY(CAST((SELECT %b::bigint[]) AS bigint[])) AND state = ANY(%b::smallint[])",
        (state, now, list(pks), list(open_states)),
    )
