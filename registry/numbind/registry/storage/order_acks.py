"""A platform's acks of its orders: the orders an ack names, and recording outcomes (each
order's state, and its binding's for REVOKE orders).

Like every write to orders and bindings, by (pk, token) so each touches one partition on
PostgreSQL (storage.pgsets); a row a re-key moved since it was read goes by pk alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain.types import (
    AckOutcome,
    BindingState,
    EventKind,
    OrderState,
    now_us,
)
from numbind.registry.storage import pgorder_sets, pgsets
from numbind.registry.storage.db import driver_sql
from numbind.registry.storage.models import OrderRow
from numbind.registry.storage.orders import OPEN_STATES
from numbind.registry.storage.pg_session import custom_plans
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class AckTarget:
    pk: int
    id: str
    platform_pk: int
    binding_pk: int
    kind: int
    state: int
    outcome: int
    token: bytes  # the partition key it is stored under when read


# An AckTarget's columns, in its order (both lookups are driver SQL).
_TARGET_COLUMNS = "o.pk, o.id, o.platform_pk, o.binding_pk, o.kind, o.state, o.outcome, o.token"


def orders_by_id(
    session: Session, ids: Sequence[str], tokens: Mapping[str, bytes] | None = None
) -> dict[str, AckTarget]:
    """The orders named by id. `tokens`: the token each order is thought to be stored under
    (an ack names only the order; the process that streamed it knows its token). On
    PostgreSQL an id with its token probes one partition, an id alone all of them (32 ms
    against 2 ms for 217 acks at 1M bindings in 16 partitions); an order a hint misses (a
    re-key moved it, or the hint is wrong) is looked up by id alone, so a hint never
    changes the answer. SQLite has one table: hints are not used.

    On PostgreSQL the orders found stay locked (FOR UPDATE) until the transaction ends: an
    ack judges them open and then writes them, so a second ack of the same orders waits
    and is judged on what the first wrote (a duplicate, or already acked otherwise).
    SQLite's one writer already runs acks one after the other."""
    out: dict[str, AckTarget] = {}
    rest = list(ids)
    custom_plans(session)  # joins over `orders`, which a reissue grows from nearly empty
    conn = session.connection()
    if tokens and conn.dialect.name == "postgresql":
        pairs = [(i, tokens[i]) for i in ids if i in tokens]
        for i in range(0, len(pairs), 500):
            for r in pgorder_sets.orders_by_id_token(conn, pairs[i : i + 500], _TARGET_COLUMNS):
                out[r.id] = _target(r)
        rest = [i for i in ids if i not in out]
    for i in range(0, len(rest), 500):
        part = rest[i : i + 500]
        # Driver SQL: an `IN` of 500 ids through the ORM coerced each id on its own.
        where, params = pgsets.any_of(conn, "o.id", part, "text")
        lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
        sql = driver_sql(conn, f"SELECT {_TARGET_COLUMNS} FROM orders AS o WHERE {where}{lock}")
        for r in conn.exec_driver_sql(sql, params):
            out[r[1]] = _target(r)
    return out


@dataclass(frozen=True)
class PlannedAck:
    """An ack as validated, before its order is read: what it would write."""

    order_id: str
    state: int
    outcome: int
    reason: str


def ack_open(
    session: Session,
    platform_pk: int,
    planned: Sequence[PlannedAck],
    tokens: Mapping[str, bytes] | None,
) -> dict[str, AckTarget]:
    """PostgreSQL, with `tokens` (the routing hints of `orders_by_id`): write the acks whose
    order is the platform's, open, of the kind the outcome fits, and stored under its hint,
    in one statement that finds and updates each (the lookup and the update were two, each
    probing an index per order). Returns those orders as written, by id; the caller looks up
    and judges the rest with `orders_by_id`, and passes the written ones to `record_acks`
    as `written`. Elsewhere, or without hints: writes nothing, returns {}.

    An ack the caller then refuses aborts the transaction, so nothing it wrote here stays."""
    conn = session.connection()
    if not tokens or conn.dialect.name != "postgresql":
        return {}
    noted = int(AckOutcome.NOTED)  # a notice's outcome; any other is a revocation order's
    rows = [
        (a.order_id, tokens[a.order_id], a.state, a.outcome, a.reason, a.outcome == noted)
        for a in planned
        if a.order_id in tokens
    ]
    if not rows:
        return {}
    custom_plans(session)
    notice = int(EventKind.NUMBER_DEACTIVATED)
    found = pgorder_sets.ack_open_orders(conn, platform_pk, rows, notice, _TARGET_COLUMNS, now_us())
    return {r[1]: _target(r) for r in found}


def _target(r: Any) -> AckTarget:
    pk, order_id, platform_pk, binding_pk, kind, state, outcome, token = r
    return AckTarget(pk, order_id, platform_pk, binding_pk, kind, state, outcome, bytes(token))


def record_acks(
    session: Session,
    acks: Sequence[tuple[AckTarget, int, int, str]],
    *,
    written: frozenset[int] = frozenset(),
) -> None:
    """(order, new state, outcome, reason) each; bindings follow their REVOKE orders.
    `written`: pks of orders `ack_open` already wrote (their bindings still follow here).

    A refusal leaves the binding active (the holder sees the reason); done revokes it.
    """
    if not acks:
        return
    now = now_us()
    custom_plans(session)
    conn = session.connection()
    rows = [
        (o.pk, o.token, state, outcome, reason)
        for o, state, outcome, reason in acks
        if o.pk not in written
    ]
    pg = conn.dialect.name == "postgresql"
    if rows:
        _write_orders(conn, rows, now)
    revokes = [(order, state) for order, state, _, _ in acks if order.kind == int(EventKind.REVOKE)]
    # A refused order leaves its binding revoking while another order for it (a holder's
    # retry of an overdue one) is still open: that one's ack decides.
    others = _open_elsewhere(session, [o for o, s in revokes if s == OrderState.REJECTED])
    # An order's token is its binding's (they move together on a re-key).
    changes = [
        (
            order.binding_pk,
            order.token,
            int(BindingState.ACTIVE if state == OrderState.REJECTED else BindingState.REVOKED),
        )
        for order, state in revokes
        if not (state == OrderState.REJECTED and order.binding_pk in others)
    ]
    if changes and pg:
        # Unmatched ones (moved by a re-key, or no longer revoking) go by pk alone, in one
        # more statement.
        done = pgsets.set_binding_states(conn, changes, int(BindingState.REVOKING), now)
        rest = [(pk, state) for pk, _, state in changes if pk not in done]
        if rest:
            pgsets.set_binding_states_by_pk(conn, rest, int(BindingState.REVOKING), now)
    elif changes:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                "UPDATE bindings SET state = ?, updated_us = ? WHERE pk = ? AND state = ?",
            ),
            [(state, now, pk, int(BindingState.REVOKING)) for pk, _, state in changes],
        )


def _write_orders(
    conn: Connection, rows: Sequence[tuple[int, bytes, int, int, str]], now: int
) -> None:
    """(pk, token, state, outcome, reason) of orders acked."""
    if conn.dialect.name == "postgresql":
        # One statement, routed by token (storage.pgsets); orders a re-key moved since they
        # were read go by pk alone, in one more.
        done = pgorder_sets.record_order_acks(conn, rows, now)
        moved = [(pk, state, outcome, reason) for pk, _, state, outcome, reason in rows]
        moved = [r for r in moved if r[0] not in done]
        if moved:
            pgorder_sets.record_order_acks_by_pk(conn, moved, now)
        return
    conn.exec_driver_sql(
        driver_sql(
            conn,
            "UPDATE orders SET state = ?, outcome = ?, reason = ?, acked_us = ? WHERE pk = ?",
        ),
        [(state, outcome, reason, now, pk) for pk, _, state, outcome, reason in rows],
    )


def _open_elsewhere(session: Session, acked: Sequence[AckTarget]) -> set[int]:
    """Bindings of ``acked`` with another open REVOKE order besides these."""
    if not acked:
        return set()
    skip = {o.pk for o in acked}
    found: set[int] = set()
    pks = sorted({o.binding_pk for o in acked})
    for i in range(0, len(pks), 500):
        for opk, bpk in session.execute(
            select(OrderRow.pk, OrderRow.binding_pk).where(
                OrderRow.binding_pk.in_(pks[i : i + 500]),
                OrderRow.kind == int(EventKind.REVOKE),
                OrderRow.state.in_(OPEN_STATES),
            )
        ):
            if opk not in skip:
                found.add(bpk)
    return found
