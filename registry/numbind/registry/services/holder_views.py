"""What a holder sees, read from one registry's store: its platforms bound to a number, and
a revocation's progress per platform. Shared by the hub's own answers (a federation of one,
or a hub that also holds bindings) and a member's answers to the hub's fan-out. No grpc.

`registry_id`/`registry_name` say which federation member holds the platform; empty in a
federation of one, where there is only one registry to name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import BindingState, OrderState, TenureClass, now_us
from numbind.registry.storage import bindings, orders, principals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Session

__all__ = [
    "UNNAMED",
    "NumberView",
    "PlatformGroup",
    "PlatformProgress",
    "RefusedRevocation",
    "RegistryName",
    "RevocationView",
    "Unavailable",
    "number_platforms",
    "revocation_progress",
    "to_ask",
]


@dataclass(frozen=True)
class RegistryName:
    """A federation member as a holder's view names it; empty in a federation of one."""

    id: str = ""
    name: str = ""


# A federation of one names no registry.
UNNAMED = RegistryName()


@dataclass(frozen=True)
class Unavailable:
    """A member whose answer is missing, and why."""

    registry: RegistryName
    reason: str


@dataclass(frozen=True)
class RefusedRevocation:
    """A revocation of a group's bindings that their platform refused: the order the holder
    quotes (by its short form) and the platform's reason. Never an account_ref."""

    revocation_id: str
    order_id: str
    reason: str
    refused_us: int


@dataclass
class PlatformGroup:
    platform_id: str
    display_name: str
    category: str
    tenure_class: TenureClass
    active_count: int = 0
    earliest_us: int = 0
    latest_us: int = 0
    open_revocation: tuple[str, int] | None = None
    registry: RegistryName = UNNAMED
    # Only while open_revocation is None: the latest refusal of these bindings.
    refused: RefusedRevocation | None = None


@dataclass
class NumberView:
    token: bytes
    key_id: str
    tenure_start_us: int
    platforms: list[PlatformGroup] = field(default_factory=list)


@dataclass(frozen=True)
class PlatformProgress:
    platform_id: str
    display_name: str
    category: str
    state: OrderState
    orders: int
    done: int
    rejected: int
    reason: str
    updated_us: int | None
    # The platform's orders in this revocation, oldest first, and their latest deadline.
    order_ids: tuple[str, ...] = ()
    deadline_us: int | None = None
    registry: RegistryName = UNNAMED


@dataclass(frozen=True)
class RevocationView:
    revocation_id: str
    cause: int
    created_us: int
    platforms: list[PlatformProgress]
    unavailable: tuple[Unavailable, ...] = ()
    # The report's orders still being created here (services.local_apply): `platforms`
    # counts those made so far.
    orders_pending: bool = False
    # (leaf index, kind, ref) of its trigger, orders and outcomes in the hub's verifiable
    # log (the log is the lifecycle authority's; a member's view has none).
    leaves: list[tuple[int, str, str]] = field(default_factory=list)


def number_platforms(
    session: Session, token: StoreToken, tenure_start_us: int, registry: RegistryName
) -> list[PlatformGroup]:
    """This store's live bindings to `token`, one group per platform and tenure class,
    pre-tenure first, then by display name. A group with no open revocation carries the
    latest refusal of its bindings, if any (DESIGN: a refusal leaves them bound, and the
    holder sees why); a refusal is of that group's bindings only."""
    live = bindings.bindings_for_token(session, token)
    names = principals.names_by_pks(session, {b.platform_pk for b in live})
    orders_of = orders.revoke_orders_for_bindings(session, live, now_us())
    open_, refused = orders_of.open, orders_of.refused
    groups: dict[tuple[int, TenureClass], PlatformGroup] = {}
    # Per group, the refusals of its bindings.
    refusals: dict[tuple[int, TenureClass], list[orders.Refusal]] = {}
    for b in sorted(live, key=lambda b: b.bound_us):
        cls = TenureClass.PRE_TENURE if b.bound_us < tenure_start_us else TenureClass.IN_TENURE
        p = names[b.platform_pk]
        g = groups.setdefault(
            (b.platform_pk, cls),
            PlatformGroup(
                p.name, p.display_name, p.category, cls, earliest_us=b.bound_us, registry=registry
            ),
        )
        g.active_count += 1
        g.latest_us = b.bound_us
        if b.pk in open_:
            g.open_revocation = open_[b.pk]
        if b.pk in refused and b.pk not in open_:
            refusals.setdefault((b.platform_pk, cls), []).append(refused[b.pk])
    for key, found in refusals.items():
        g = groups[key]
        if g.open_revocation is None:
            g.refused = _latest_refusal(found)
    return sorted(groups.values(), key=lambda g: (g.tenure_class, g.display_name))


def _latest_refusal(found: Sequence[orders.Refusal]) -> RefusedRevocation:
    """The latest refused revocation among a group's refusals, named by its oldest order of
    the group's (as a revocation's progress names a platform's orders, oldest first)."""
    rid = max(found, key=lambda r: r.order_pk).revocation_id
    first = min((r for r in found if r.revocation_id == rid), key=lambda r: r.order_pk)
    return RefusedRevocation(rid, first.order_id, first.reason, first.acked_us)


def revocation_progress(
    session: Session, revocation_id: str, registry: RegistryName
) -> list[PlatformProgress]:
    """Per platform of this store, the state of its orders in `revocation_id`."""
    rows = orders.progress(session, revocation_id, now_us())
    names = principals.by_pks(session, {r.platform_pk for r in rows})
    ids = orders.order_ids(session, revocation_id)
    out = []
    for r in rows:
        if r.pending:
            state = OrderState.PENDING
        elif r.delivered:
            state = OrderState.DELIVERED
        elif r.overdue:
            state = OrderState.OVERDUE
        elif r.rejected:
            state = OrderState.REJECTED
        else:
            state = OrderState.DONE
        p = names[r.platform_pk]
        out.append(
            PlatformProgress(
                p.name,
                p.display_name,
                p.category,
                state,
                r.orders,
                r.done,
                r.rejected,
                r.reason if r.rejected else "",
                r.updated_us,
                tuple(ids.get(r.platform_pk, ())),
                r.deadline_us,
                registry,
            )
        )
    return out


def to_ask(session: Session, in_scope: Sequence[StoredBinding]) -> list[StoredBinding]:
    """The bindings in scope a new revocation orders: the active ones, and those whose
    open order is past its deadline (asked again). One whose order is still within its
    deadline is left to it: asking twice at once would only double the platform's work."""
    revoking = [b for b in in_scope if b.state == BindingState.REVOKING]
    open_ = orders.open_orders_for_bindings(session, revoking, now_us()) if revoking else {}
    return [
        b
        for b in in_scope
        if b.state == BindingState.ACTIVE
        or (b.pk in open_ and open_[b.pk][1] == int(OrderState.OVERDUE))
    ]
