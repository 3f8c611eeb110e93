"""What an operator watches, read cheaply enough for a metrics scrape every few seconds.

Only open orders are counted (the partial index ix_orders_open, of unacked orders, serves
it); finished orders, bindings and numbers grow without bound and are left to
`numbind admin stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.domain.keymap import RekeyStatus
from numbind.registry.domain.types import OrderState
from numbind.registry.storage import keymap
from numbind.registry.storage.models import OrderRow, PrincipalRow
from numbind.registry.storage.orders import OPEN_STATES
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class PlatformFeed:
    platform: str
    feed_head: int
    # Orders not yet acked: sent or not; past their deadline; the oldest one's creation.
    pending: int
    delivered: int
    overdue: int
    oldest_open_us: int | None


@dataclass(frozen=True)
class OpsSnapshot:
    feeds: list[PlatformFeed]
    rekey: RekeyStatus | None


def snapshot(session: Session, now_us: int) -> OpsSnapshot:
    late = func.sum(case((OrderRow.deadline_us < now_us, 1), else_=0))
    rows = session.execute(
        select(
            OrderRow.platform_pk,
            OrderRow.state,
            func.count(),
            late,
            func.min(OrderRow.created_us),
        )
        # acked_us IS NULL: the open orders' partial index (ix_orders_open).
        .where(OrderRow.acked_us.is_(None), OrderRow.state.in_(OPEN_STATES))
        .group_by(OrderRow.platform_pk, OrderRow.state)
    ).all()
    open_by: dict[int, list[int | None]] = {}
    for pk, state, count, overdue, oldest in rows:
        acc = open_by.setdefault(int(pk), [0, 0, 0, None])
        acc[0 if state == int(OrderState.PENDING) else 1] = int(count) - int(overdue or 0)
        acc[2] = int(acc[2] or 0) + int(overdue or 0)
        acc[3] = oldest if acc[3] is None else min(int(acc[3]), int(oldest))
    feeds = []
    for pk, name, head in session.execute(
        select(PrincipalRow.pk, PrincipalRow.name, PrincipalRow.feed_head)
        .where(PrincipalRow.role == "platform")
        .order_by(PrincipalRow.name)
    ):
        pending, delivered, overdue, oldest = open_by.get(int(pk), [0, 0, 0, None])
        feeds.append(
            PlatformFeed(
                name, int(head), int(pending or 0), int(delivered or 0), int(overdue or 0), oldest
            )
        )
    return OpsSnapshot(feeds, keymap.latest_rekey(session))
