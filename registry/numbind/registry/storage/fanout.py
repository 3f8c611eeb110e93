"""The hub's fan-out outbox: holder revocations still to reach federation members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from numbind.registry.storage.models import FanoutOutboxRow
from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

__all__ = [
    "OutboxEntry",
    "add",
    "due",
    "for_revocation",
    "mark_delivered",
    "mark_failed",
    "next_due_us",
]


@dataclass(frozen=True)
class OutboxEntry:
    revocation_id: str
    member_id: str
    request: str
    attempts: int
    delivered: bool
    orders: int | None
    last_error: str


def _entry(row: FanoutOutboxRow) -> OutboxEntry:
    return OutboxEntry(
        row.revocation_id,
        row.member_id,
        row.request,
        row.attempts,
        row.delivered_us is not None,
        row.orders,
        row.last_error,
    )


def add(
    session: Session, revocation_id: str, member_ids: Sequence[str], request: str, now_us: int
) -> None:
    """One undelivered row per member, due now; in the revocation's own transaction."""
    for member_id in member_ids:
        session.add(
            FanoutOutboxRow(
                revocation_id=revocation_id,
                member_id=member_id,
                request=request,
                created_us=now_us,
                attempts=0,
                next_attempt_us=now_us,
                delivered_us=None,
                orders=None,
                last_error="",
            )
        )
    session.flush()


def for_revocation(session: Session, revocation_id: str) -> list[OutboxEntry]:
    rows = session.scalars(
        select(FanoutOutboxRow)
        .where(FanoutOutboxRow.revocation_id == revocation_id)
        .order_by(FanoutOutboxRow.member_id)
    )
    return [_entry(r) for r in rows]


def due(session: Session, now_us: int, limit: int) -> list[OutboxEntry]:
    """Undelivered rows whose next attempt is due, oldest first."""
    rows = session.scalars(
        select(FanoutOutboxRow)
        .where(FanoutOutboxRow.delivered_us.is_(None), FanoutOutboxRow.next_attempt_us <= now_us)
        .order_by(FanoutOutboxRow.next_attempt_us)
        .limit(limit)
    )
    return [_entry(r) for r in rows]


def next_due_us(session: Session) -> int | None:
    """When the next undelivered row is due, if any."""
    return session.scalar(
        select(FanoutOutboxRow.next_attempt_us)
        .where(FanoutOutboxRow.delivered_us.is_(None))
        .order_by(FanoutOutboxRow.next_attempt_us)
        .limit(1)
    )


def mark_delivered(
    session: Session, revocation_id: str, member_id: str, orders: int, now_us: int
) -> None:
    session.execute(
        _attempt(revocation_id, member_id, delivered_us=now_us, orders=orders, last_error="")
    )


def mark_failed(
    session: Session, revocation_id: str, member_id: str, error: str, next_attempt_us: int
) -> None:
    session.execute(
        _attempt(revocation_id, member_id, next_attempt_us=next_attempt_us, last_error=error[:500])
    )


def _attempt(revocation_id: str, member_id: str, **values: Any) -> Update:
    """One more attempt counted on the member's undelivered row of the revocation, setting
    ``values`` (a delivered row is left as it is)."""
    return (
        update(FanoutOutboxRow)
        .where(
            FanoutOutboxRow.revocation_id == revocation_id,
            FanoutOutboxRow.member_id == member_id,
            FanoutOutboxRow.delivered_us.is_(None),
        )
        .values(attempts=FanoutOutboxRow.attempts + 1, **values)
    )
