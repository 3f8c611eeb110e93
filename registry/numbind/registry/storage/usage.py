"""Per-principal daily usage counters."""

from __future__ import annotations

from numbind.registry.storage.models import UsageRow
from sqlalchemy import select, update
from sqlalchemy.orm import Session


def add(session: Session, principal_pk: int, day: int, *, tokens: int = 0, checks: int = 0) -> None:
    result = session.execute(
        update(UsageRow)
        .where(UsageRow.principal_pk == principal_pk, UsageRow.day == day)
        .values(
            tokens_evaluated=UsageRow.tokens_evaluated + tokens,
            reassigned_checks=UsageRow.reassigned_checks + checks,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            UsageRow(
                principal_pk=principal_pk,
                day=day,
                tokens_evaluated=tokens,
                reassigned_checks=checks,
            )
        )


def tokens_on(session: Session, principal_pk: int, day: int) -> int:
    row = session.get(UsageRow, (principal_pk, day))
    return row.tokens_evaluated if row else 0


def totals(session: Session) -> dict[int, tuple[int, int]]:
    """principal pk -> (tokens evaluated, reassigned checks), all days."""
    out: dict[int, tuple[int, int]] = {}
    for pk, tokens, checks in session.execute(
        select(UsageRow.principal_pk, UsageRow.tokens_evaluated, UsageRow.reassigned_checks)
    ):
        t, c = out.get(pk, (0, 0))
        out[pk] = (t + tokens, c + checks)
    return out
