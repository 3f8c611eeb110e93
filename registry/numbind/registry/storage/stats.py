"""The registry's statistics (`numbind admin stats`, Admin.GetStats), read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.domain.keymap import RekeyStatus
from numbind.registry.domain.types import LIVE_BINDING_STATES, OrderState, Role
from numbind.registry.storage import keymap, principals, usage
from numbind.registry.storage.models import BindingRow, NumberRow, OrderRow, PrincipalRow
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Usage:
    role: str
    name: str
    tokens_evaluated: int
    reassigned_checks: int


@dataclass(frozen=True)
class Stats:
    platforms: int
    carriers: int
    active_bindings: int
    numbers: int
    # Every OrderState; PENDING and DELIVERED exclude orders past their deadline, which
    # count as OVERDUE instead.
    orders: dict[OrderState, int]
    usage: list[Usage]
    # The latest store re-key (running or done), None before the first rotation.
    rekey: RekeyStatus | None


def read(session: Session, now_us: int) -> Stats:
    roles = dict(
        session.execute(select(PrincipalRow.role, func.count()).group_by(PrincipalRow.role)).all()
    )
    bindings = session.scalar(
        select(func.count())
        .select_from(BindingRow)
        .where(BindingRow.state.in_([int(s) for s in LIVE_BINDING_STATES]))
    )
    numbers = session.scalar(select(func.count()).select_from(NumberRow))
    return Stats(
        platforms=int(roles.get(Role.PLATFORM, 0)),
        carriers=int(roles.get(Role.CARRIER, 0)),
        active_bindings=bindings or 0,
        numbers=numbers or 0,
        orders=_orders(session, now_us),
        usage=_usage(session),
        rekey=keymap.latest_rekey(session),
    )


def _orders(session: Session, now_us: int) -> dict[OrderState, int]:
    out: dict[OrderState, int] = {s: 0 for s in OrderState}
    late = func.sum(case((OrderRow.deadline_us < now_us, 1), else_=0))
    for state, overdue, count in session.execute(
        select(OrderRow.state, late, func.count()).group_by(OrderRow.state)
    ):
        if state in (OrderState.PENDING, OrderState.DELIVERED):
            out[OrderState.OVERDUE] += int(overdue or 0)
            count -= int(overdue or 0)
        out[OrderState(state)] += count
    return out


def _usage(session: Session) -> list[Usage]:
    names = {r.pk: r for r in principals.list_all(session)}
    return [
        Usage(names[pk].role, names[pk].name, tokens, checks)
        for pk, (tokens, checks) in sorted(usage.totals(session).items())
        if pk in names
    ]
