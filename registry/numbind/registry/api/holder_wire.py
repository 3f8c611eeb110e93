"""Holder views <-> wire, for the Holders servicer, the members' fan-out servicer and the
hub's client of it (one conversion both ways, so a member's answer reads back exactly)."""

from __future__ import annotations

from numbind.registry.api.convert import ts_from_us, us_from_ts
from numbind.registry.domain.types import OrderState, TenureClass
from numbind.registry.services.fanout_model import AdmittedNumber
from numbind.registry.services.holder_views import (
    PlatformGroup,
    PlatformProgress,
    RefusedRevocation,
    RegistryName,
    Unavailable,
)
from numbind.v1 import fanout_pb2, holders_pb2

__all__ = [
    "group_from_wire",
    "group_to_wire",
    "number_from_wire",
    "number_to_wire",
    "progress_from_wire",
    "progress_to_wire",
    "unavailable_to_wire",
]


def group_to_wire(g: PlatformGroup) -> holders_pb2.PlatformBindings:
    item = holders_pb2.PlatformBindings(
        platform_id=g.platform_id,
        display_name=g.display_name,
        category=g.category,
        tenure_class=int(g.tenure_class),  # type: ignore[arg-type]
        active_count=g.active_count,
        earliest_bound_at=ts_from_us(g.earliest_us),
        latest_bound_at=ts_from_us(g.latest_us),
        registry_id=g.registry.id,
        registry_name=g.registry.name,
    )
    if g.open_revocation:
        item.open_revocation.revocation_id = g.open_revocation[0]
        item.open_revocation.state = g.open_revocation[1]  # type: ignore[assignment]
    if g.refused:
        item.refused_revocation.CopyFrom(
            holders_pb2.RefusedRevocation(
                revocation_id=g.refused.revocation_id,
                order_id=g.refused.order_id,
                reason=g.refused.reason,
                refused_at=ts_from_us(g.refused.refused_us),
            )
        )
    return item


def group_from_wire(p: holders_pb2.PlatformBindings, registry: RegistryName) -> PlatformGroup:
    """A member's group; named by the member the hub asked, whatever the answer says."""
    open_ = (
        (p.open_revocation.revocation_id, int(p.open_revocation.state))
        if p.HasField("open_revocation")
        else None
    )
    r = p.refused_revocation
    refused = (
        RefusedRevocation(r.revocation_id, r.order_id, r.reason, us_from_ts(r.refused_at))
        if p.HasField("refused_revocation")
        else None
    )
    return PlatformGroup(
        p.platform_id,
        p.display_name,
        p.category,
        TenureClass(p.tenure_class),
        p.active_count,
        us_from_ts(p.earliest_bound_at),
        us_from_ts(p.latest_bound_at),
        open_,
        registry,
        refused,
    )


def progress_to_wire(p: PlatformProgress) -> holders_pb2.PlatformProgress:
    return holders_pb2.PlatformProgress(
        platform_id=p.platform_id,
        display_name=p.display_name,
        category=p.category,
        state=int(p.state),  # type: ignore[arg-type]
        orders=p.orders,
        done=p.done,
        rejected=p.rejected,
        reason=p.reason,
        updated_at=ts_from_us(p.updated_us) if p.updated_us else None,
        order_ids=p.order_ids,
        deadline=ts_from_us(p.deadline_us) if p.deadline_us else None,
        registry_id=p.registry.id,
        registry_name=p.registry.name,
    )


def progress_from_wire(p: holders_pb2.PlatformProgress, registry: RegistryName) -> PlatformProgress:
    return PlatformProgress(
        p.platform_id,
        p.display_name,
        p.category,
        OrderState(p.state),
        p.orders,
        p.done,
        p.rejected,
        p.reason,
        us_from_ts(p.updated_at) if p.HasField("updated_at") else None,
        tuple(p.order_ids),
        us_from_ts(p.deadline) if p.HasField("deadline") else None,
        registry,
    )


def unavailable_to_wire(u: Unavailable) -> holders_pb2.UnavailableRegistry:
    return holders_pb2.UnavailableRegistry(
        registry_id=u.registry.id, registry_name=u.registry.name, reason=u.reason
    )


def number_to_wire(n: AdmittedNumber) -> fanout_pb2.AdmittedNumber:
    return fanout_pb2.AdmittedNumber(
        token=n.token, key_id=n.key_id, tenure_start=ts_from_us(n.tenure_start_us)
    )


def number_from_wire(n: fanout_pb2.AdmittedNumber) -> AdmittedNumber:
    return AdmittedNumber(bytes(n.token), n.key_id, us_from_ts(n.tenure_start))
