"""Revocations, their orders, and each platform's feed (the transactional outbox): writing
them, and reading a revocation's progress and a binding's open orders (storage.feed reads
the feeds; storage.order_acks records the acks).

Orders are written in the transaction of their trigger, each with its place in its
platform's feed (`orders.feed_seq`). Each platform's sequence comes from
`principals.feed_head`, bumped for every platform of a transaction at once (storage.pgsets
on PostgreSQL): the row locks serialise appenders, so sequences are gap-free.

Orders carry their binding's token (the partition key on PostgreSQL, see storage.models):
joins between them and bindings match on (pk, token), and writes by pk name the token too,
so each touches one partition and could stay on one shard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain.ids import uuid7_texts
from numbind.registry.domain.types import (
    BindingState,
    EventCause,
    EventKind,
    OrderState,
    now_us,
)
from numbind.registry.storage import pgcopy, pgsets, signals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import driver_sql, marks
from numbind.registry.storage.models import (
    OrderRow,
    PrincipalRow,
    RevocationRow,
)
from sqlalchemy import Connection, and_, case, func, select, update
from sqlalchemy.orm import Session

OPEN_STATES = (int(OrderState.PENDING), int(OrderState.DELIVERED))
_OPEN_SQL = ", ".join(map(str, OPEN_STATES))
# Enum values looked up once: in Python 3.11 reading a member off its class (a descriptor)
# and int() of it cost ~0.1 us each, and `append` did both per order (50,000 orders per
# member in a 10,000-number reissue).
_PENDING = int(OrderState.PENDING)
_REVOKE = EventKind.REVOKE
_REVOKING = int(BindingState.REVOKING)
# An order row as append builds it (besides its pk).
_ORDER_COLUMNS = (
    "id",
    "revocation_id",
    "platform_pk",
    "binding_pk",
    "token",
    "kind",
    "cause",
    "state",
    "outcome",
    "reason",
    "tenure_start_us",
    "created_us",
    "deadline_us",
    "feed_seq",
)


def new_revocation(
    session: Session,
    cause: EventCause,
    carrier_pk: int,
    *,
    token: bytes | None = None,
    key_id: str | None = None,
    subject: str | None = None,
    scope: int = 0,
    revocation_id: str | None = None,
) -> str:
    """A trigger row; a holder request's names its token under the store key `key_id`.
    A federation member takes the hub's `revocation_id` (one id across the federation)."""
    rid = revocation_id or uuid7_texts(1)[0]
    session.add(
        RevocationRow(
            id=rid,
            cause=int(cause),
            carrier_pk=carrier_pk,
            token=token,
            key_id=key_id,
            subject=subject,
            scope=scope,
            created_us=now_us(),
        )
    )
    session.flush()
    return rid


@dataclass(frozen=True)
class NewOrder:
    binding: StoredBinding
    kind: EventKind
    cause: EventCause
    tenure_start_us: int | None


def append(
    session: Session,
    revocation_id: str,
    orders: Sequence[NewOrder],
    deadline_seconds: float,
    *,
    created: list[tuple[str, NewOrder]] | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> set[int]:
    """Create the orders, each at the end of its platform's feed; mark revoked bindings
    REVOKING.

    Returns the platforms whose feeds grew (to wake their streams after commit); `created`,
    if given, receives each new order's id with its order (for the verifiable log).
    `meanwhile`, if given, is called once, with `created` complete, before this returns:
    on PostgreSQL while the server still writes the orders (`pgcopy.copy_rows`), so it
    must not use the session. The local applier builds the orders' log leaves there.
    """
    if not orders:
        if meanwhile is not None:
            meanwhile()
        return set()
    now = now_us()
    deadline = now + int(deadline_seconds * 1_000_000)
    by_platform: dict[int, list[NewOrder]] = defaultdict(list)
    for order in orders:
        by_platform[order.binding.platform_pk].append(order)
    token_of = _current_tokens(session, orders, now)
    order_rows: list[tuple[object, ...]] = []
    ids = iter(uuid7_texts(len(orders)))
    heads = _bump_feed_heads(session, {pk: len(batch) for pk, batch in by_platform.items()})
    for platform_pk in sorted(by_platform):
        batch = by_platform[platform_pk]
        seq = heads[platform_pk] - len(batch)
        for order in batch:
            seq += 1
            oid = next(ids)
            if created is not None:
                created.append((oid, order))
            binding_pk = order.binding.pk
            order_rows.append(
                (
                    oid,
                    revocation_id,
                    platform_pk,
                    binding_pk,
                    token_of[binding_pk],
                    int(order.kind),
                    int(order.cause),
                    _PENDING,
                    0,
                    "",
                    order.tenure_start_us,
                    now,
                    deadline,
                    seq,
                )
            )
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    # pks drawn up front, so no insert reads anything back. On SQLite this transaction is
    # the one writer until it commits (BEGIN IMMEDIATE): the pks above the highest one now
    # are free and are its own.
    if pg:
        pks: Sequence[int] = pgsets.next_pks(conn, "orders_pk_seq", len(order_rows))
    else:
        top = conn.exec_driver_sql("SELECT COALESCE(MAX(pk), 0) FROM orders").scalar_one()
        pks = range(top + 1, top + 1 + len(order_rows))
    numbered = [(pk, *r) for pk, r in zip(pks, order_rows, strict=True)]
    if pg:
        # The bindings of REVOKE orders became REVOKING as they were locked (_current_tokens).
        # The orders are one COPY, without RETURNING (as `INSERT ... SELECT FROM unnest(...)
        # RETURNING`, 20,000 orders and their then separate feed entries took 2.7-3.6 s
        # against 1.0-1.9 s, alternated on the loaded 2-core machine). COPY routes each row
        # to its token's partition; the caller's `meanwhile` runs while the server writes.
        pgcopy.copy_rows(conn, "orders", ("pk", *_ORDER_COLUMNS), numbered, meanwhile=meanwhile)
    else:
        if meanwhile is not None:
            meanwhile()
        revoking = [(o.binding.pk, token_of[o.binding.pk]) for o in orders if o.kind == _REVOKE]
        _append_rows(conn, numbered, revoking, now)
    # Other processes' streams of these feeds wake when this transaction commits.
    signals.announce(session, signals.FEED, by_platform)
    return set(by_platform)


def _bump_feed_heads(session: Session, counts: dict[int, int]) -> dict[int, int]:
    """Each platform's feed head moved on by its count, locked until commit (a fixed lock
    order, by pk: no deadlocks between appenders); returns the new heads."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return pgsets.bump_feed_heads(conn, counts)
    return {
        pk: session.execute(
            update(PrincipalRow)
            .where(PrincipalRow.pk == pk)
            .values(feed_head=PrincipalRow.feed_head + counts[pk])
            .returning(PrincipalRow.feed_head)
        ).scalar_one()
        for pk in sorted(counts)
    }


def _append_rows(
    conn: Connection,
    order_rows: Sequence[tuple[object, ...]],
    revoking: list[tuple[int, bytes]],
    now: int,
) -> None:
    """SQLite: the orders and REVOKING bindings, by executemany (an embedded database has
    no round trip to save)."""
    columns = ("pk", *_ORDER_COLUMNS)
    conn.exec_driver_sql(
        driver_sql(
            conn, f"INSERT INTO orders ({', '.join(columns)}) VALUES ({marks(len(columns))})"
        ),
        order_rows,
    )
    if revoking:
        conn.exec_driver_sql(
            driver_sql(
                conn, "UPDATE bindings SET state = ?, updated_us = ? WHERE pk = ? AND token = ?"
            ),
            [(_REVOKING, now, pk, token) for pk, token in revoking],
        )


def _current_tokens(session: Session, orders: Sequence[NewOrder], now: int) -> dict[int, bytes]:
    """binding pk -> the token its row holds now, the binding locked until commit; on
    PostgreSQL the bindings of REVOKE orders become REVOKING in the same statement, if they
    are still in the state they were read in (else StaleRead: the transaction runs again).

    An order takes its binding's token (the partition key). The caller read the bindings
    without a lock, and on PostgreSQL a re-key batch may have converted one since; reading
    the token under the row lock settles it, and a re-key batch that converts the binding
    later waits for this transaction and then moves its orders too (storage.dependents).
    SQLite's single writer already excludes the re-key for the whole transaction."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        return {o.binding.pk: o.binding.binding.token.value for o in orders}
    # Each binding once: with the state it was read in if an order revokes it (the lock
    # checks it still is: pgsets.lock_bindings), else None (a notice: locked only).
    rows: dict[int, tuple[bytes, int | None]] = {}
    for o in orders:
        _, read = rows.get(o.binding.pk, (b"", None))
        if o.kind == EventKind.REVOKE:
            read = int(o.binding.state)
        rows[o.binding.pk] = (o.binding.binding.token.value, read)
    return pgsets.lock_bindings(
        conn, [(pk, t, r) for pk, (t, r) in rows.items()], int(BindingState.REVOKING), now
    )


def revocation(session: Session, revocation_id: str) -> RevocationRow | None:
    return session.get(RevocationRow, revocation_id)


@dataclass(frozen=True)
class PlatformOrders:
    platform_pk: int
    orders: int
    pending: int
    delivered: int
    done: int
    rejected: int
    overdue: int
    reason: str
    updated_us: int | None
    deadline_us: int | None = None


def progress(session: Session, revocation_id: str, now: int) -> list[PlatformOrders]:
    open_ = OrderRow.state.in_(OPEN_STATES)
    overdue = and_(open_, OrderRow.deadline_us < now)

    def count_when(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    rows: Any = session.execute(
        select(
            OrderRow.platform_pk,
            func.count(),
            count_when(and_(OrderRow.state == int(OrderState.PENDING), ~overdue)),
            count_when(and_(OrderRow.state == int(OrderState.DELIVERED), ~overdue)),
            count_when(OrderRow.state == int(OrderState.DONE)),
            count_when(OrderRow.state == int(OrderState.REJECTED)),
            count_when(overdue),
            func.max(OrderRow.reason),
            func.max(OrderRow.acked_us),
            func.max(OrderRow.deadline_us),
        )
        .where(OrderRow.revocation_id == revocation_id)
        .group_by(OrderRow.platform_pk)
        .order_by(OrderRow.platform_pk)
    )
    return [
        PlatformOrders(
            platform_pk=r[0],
            orders=int(r[1]),
            pending=int(r[2] or 0),
            delivered=int(r[3] or 0),
            done=int(r[4] or 0),
            rejected=int(r[5] or 0),
            overdue=int(r[6] or 0),
            reason=r[7] or "",
            updated_us=r[8],
            deadline_us=r[9],
        )
        for r in rows
    ]


def order_ids(session: Session, revocation_id: str) -> dict[int, list[str]]:
    """platform pk -> the ids of its orders in this revocation, oldest first."""
    out: dict[int, list[str]] = defaultdict(list)
    for platform_pk, oid in session.execute(
        select(OrderRow.platform_pk, OrderRow.id)
        .where(OrderRow.revocation_id == revocation_id)
        .order_by(OrderRow.pk)
    ):
        out[platform_pk].append(oid)
    return dict(out)


def ids_of(session: Session, revocation_id: str) -> list[str]:
    """The ids of a revocation's orders, in no particular order (its log leaf sorts them).
    Driver SQL: a 10,000-number reissue reads 100,000 here at the end of its last chunk,
    where the ORM's rows (order_ids) cost ~0.9 s of the apply thread, which every last ack
    waits for."""
    conn = session.connection()
    return list(
        conn.exec_driver_sql(
            driver_sql(conn, "SELECT id FROM orders WHERE revocation_id = ?"), (revocation_id,)
        ).scalars()
    )


def open_orders_for_bindings(
    session: Session, bindings: Sequence[StoredBinding], now: int
) -> dict[int, tuple[str, int]]:
    """binding pk -> (revocation id, state incl. OVERDUE) of its latest open order."""
    return revoke_orders_for_bindings(session, bindings, now).open


@dataclass(frozen=True)
class Refusal:
    """A binding's latest REVOKE order, which its platform refused."""

    order_pk: int
    order_id: str
    revocation_id: str
    reason: str
    acked_us: int


@dataclass(frozen=True)
class RevokeOrders:
    # binding pk -> (revocation id, state incl. OVERDUE) of its latest open order.
    open: dict[int, tuple[str, int]]
    # binding pk -> its latest REVOKE order where that one was refused after the binding
    # was bound (a binding published anew after its order is one the refusal was not about).
    refused: dict[int, Refusal]


def revoke_orders_for_bindings(
    session: Session, bindings: Sequence[StoredBinding], now: int
) -> RevokeOrders:
    """What a holder's view shows of the bindings' REVOKE orders, in one read (open orders
    and refusals were two reads of the same rows on every holder query). An order holds its
    binding's token, so the read names the tokens: on PostgreSQL only their partitions (by
    binding pk alone it probed all 16: 11.8 ms p50 against 1.5 ms after a reissue)."""
    open_: dict[int, tuple[str, int]] = {}
    latest: dict[int, Sequence[Any]] = {}
    conn = session.connection()
    for i in range(0, len(bindings), 500):
        part = bindings[i : i + 500]
        tokens = list(dict.fromkeys(b.binding.token.value for b in part))
        # Driver SQL: every holder query reads this for each member's few bindings.
        sql = (
            "SELECT binding_pk, pk, id, revocation_id, state, reason, created_us, acked_us,"
            " deadline_us FROM orders"
            f" WHERE token IN ({marks(len(tokens))}) AND binding_pk IN ({marks(len(part))})"
            f" AND kind = {int(EventKind.REVOKE)} ORDER BY pk"
        )
        params = (*tokens, *(b.pk for b in part))
        for row in conn.exec_driver_sql(driver_sql(conn, sql), params):
            bpk, _, _, rid, state, _, _, _, deadline = row
            latest[bpk] = row
            if state in OPEN_STATES:
                open_[bpk] = (rid, int(OrderState.OVERDUE) if deadline < now else state)
    bound = {b.pk: b.bound_us for b in bindings}
    refused = {
        bpk: Refusal(opk, oid, rid, reason or "", acked or created)
        for bpk, opk, oid, rid, state, reason, created, acked, _ in latest.values()
        if state == int(OrderState.REJECTED) and created >= bound[bpk]
    }
    return RevokeOrders(open_, refused)
