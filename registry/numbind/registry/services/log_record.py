"""The log leaves each state change appends, built in that change's transaction.

Callers append with `storage.log.append` as the last write of their transaction (its lock
on the log's head is then held only for the commit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from numbind.registry.domain import logged
from numbind.registry.domain.types import EventCause
from numbind.registry.storage import log, order_acks, orders
from numbind.registry.storage.db import Session


def revocation(
    session: Session,
    revocation_id: str,
    cause: EventCause,
    carrier_pk: int,
    carrier: str,
    created: Sequence[tuple[str, orders.NewOrder]],
) -> list[logged.LogLeaf]:
    """The trigger's leaf, then one per order (each opened by its platform only)."""
    trigger = logged.revocation(
        revocation_id=revocation_id,
        cause=cause,
        carrier_pk=carrier_pk,
        carrier=carrier,
        orders=[oid for oid, _ in created],
    )
    names = platform_names(session, [o for _, o in created])
    return [trigger, *order_leaves(names, revocation_id, created)]


def platform_names(session: Session, new: Sequence[orders.NewOrder]) -> dict[int, str]:
    """The names `order_leaves` gives the platforms of `new` (read before the orders are
    written: the local applier builds their leaves while the server writes the orders)."""
    return log.principal_names(session, [o.binding.platform_pk for o in new])


def order_leaves(
    names: Mapping[int, str],
    revocation_id: str,
    created: Sequence[tuple[str, orders.NewOrder]],
) -> list[logged.LogLeaf]:
    """One leaf per order, opened by its platform only (`names`: `platform_names`). The
    local applier logs a report's orders chunk by chunk and its trigger (committing to all
    of them) after the last."""
    return [
        logged.order(
            logged.LoggedOrder(
                id=oid,
                platform_pk=o.binding.platform_pk,
                platform=names.get(o.binding.platform_pk, ""),
                kind=o.kind,
                cause=o.cause,
                token=o.binding.binding.token.value,
                key_id=o.binding.binding.token.key_id,
                tenure_start_us=o.tenure_start_us,
            ),
            revocation_id,
        )
        for oid, o in created
    ]


def acks(
    platform_pk: int, platform: str, changes: Sequence[tuple[order_acks.AckTarget, int, int, str]]
) -> list[logged.LogLeaf]:
    return [
        logged.ack(
            order_id=order.id,
            platform_pk=platform_pk,
            platform=platform,
            state=state,
            outcome=outcome,
        )
        for order, state, outcome, _ in changes
    ]
