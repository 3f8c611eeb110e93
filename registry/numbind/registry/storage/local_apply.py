"""The local applier's state: its cursor in the lifecycle log, and what it reads back.

A single registry's carrier report commits its triggers; services.local_apply then creates
their orders chunk by chunk, each chunk committed with this cursor (a `replication_cursor`
row under a reserved source name no federation member can take: member ids have no ':').
The cursor row is locked FOR UPDATE by the chunk that moves it, so registry processes
sharing a PostgreSQL store apply one chunk at a time and skip what is at or below it.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbind.registry.domain.types import EventCause, EventKind
from numbind.registry.storage import pgsets, replication
from numbind.registry.storage.models import LifecycleEventRow, OrderRow, RevocationRow
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

SOURCE = "local:orders"

_CHUNK = 500


def cursor(session: Session, *, lock: bool = False) -> int | None:
    """The last lifecycle-log sequence whose orders exist (None: no report here has used
    the applier yet)."""
    at = replication.cursor_if_any(session, SOURCE, lock=lock)
    return None if at is None else at.applied_seq


def start(session: Session, before_seq: int) -> None:
    """In a report's transaction, after its events took their sequences: the first report
    to use the applier places the cursor just before its events (the earlier ones were
    applied in their own transactions)."""
    if replication.cursor_if_any(session, SOURCE) is None:
        advance(session, before_seq)


def advance(session: Session, seq: int) -> None:
    replication.advance(
        session, SOURCE, applied_seq=seq, applied_recorded_us=0, head_seq=0, head_recorded_us=0
    )


def mark_through(session: Session, revocation_id: str, seq: int) -> None:
    session.execute(
        update(RevocationRow).where(RevocationRow.id == revocation_id).values(through_seq=seq)
    )


def through(session: Session, revocation_id: str) -> int | None:
    return session.scalar(
        select(RevocationRow.through_seq).where(RevocationRow.id == revocation_id)
    )


def pending(session: Session, revocation: RevocationRow) -> tuple[int, int] | None:
    """(cursor, the revocation's last event) while its orders are still being created."""
    if revocation.through_seq is None:
        return None
    at = cursor(session) or 0
    return None if at >= revocation.through_seq else (at, revocation.through_seq)


def set_cause(session: Session, revocation_id: str, cause: EventCause) -> None:
    session.execute(
        update(RevocationRow).where(RevocationRow.id == revocation_id).values(cause=int(cause))
    )


def earlier_tokens(
    session: Session, revocation_id: str, forms: Sequence[bytes], at_or_below: int
) -> set[bytes]:
    """Of `forms`, the tokens with an event of this revocation at or below the cursor (a
    previous chunk already ordered their bindings for it)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql" and forms:
        return pgsets.events_of_revocation(conn, forms, revocation_id, at_or_below)
    found: set[bytes] = set()
    for i in range(0, len(forms), _CHUNK):
        found.update(
            session.scalars(
                select(LifecycleEventRow.token).where(
                    LifecycleEventRow.token.in_(forms[i : i + _CHUNK]),
                    LifecycleEventRow.revocation_id == revocation_id,
                    LifecycleEventRow.seq <= at_or_below,
                )
            )
        )
    return found


def ordered(
    session: Session, revocation_id: str, binding_pks: Sequence[int]
) -> set[tuple[int, int]]:
    """(binding pk, kind) of this revocation's orders for these bindings."""
    out: set[tuple[int, int]] = set()
    for i in range(0, len(binding_pks), _CHUNK):
        for bpk, kind in session.execute(
            select(OrderRow.binding_pk, OrderRow.kind).where(
                OrderRow.revocation_id == revocation_id,
                OrderRow.binding_pk.in_(binding_pks[i : i + _CHUNK]),
            )
        ):
            out.add((int(bpk), int(kind)))
    return out


def counts(session: Session, revocation_id: str) -> tuple[int, int]:
    """(revocation orders, deactivation notices) of a revocation."""
    rows = session.execute(
        select(OrderRow.kind, func.count())
        .where(OrderRow.revocation_id == revocation_id)
        .group_by(OrderRow.kind)
    )
    by_kind = {int(k): int(n) for k, n in rows}
    return by_kind.get(int(EventKind.REVOKE), 0), by_kind.get(int(EventKind.NUMBER_DEACTIVATED), 0)
