"""A holder's revocation's orders in one registry's store. Shared by the hub's own
revocation (a federation of one, or a hub that also holds bindings) and a member's part of
the hub's fan-out. No grpc."""

from __future__ import annotations

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import EventCause, EventKind, RevocationScope
from numbind.registry.services.holder_views import to_ask
from numbind.registry.storage import bindings, numbers, orders
from numbind.registry.storage.db import Session

__all__ = ["order_holder_revocation"]


def order_holder_revocation(
    session: Session,
    revocation_id: str,
    token: StoreToken,
    scope: int,
    tenure_start_us: int,
    platform_pks: set[int] | None,
    deadline_seconds: float,
    *,
    created: list[tuple[str, orders.NewOrder]] | None = None,
) -> tuple[int, set[int]]:
    """A holder's revocation's orders in this store: one for each of the number's bindings
    in `scope` (ALL_PRE_TENURE: bound before `tenure_start_us`) at `platform_pks` (None:
    any) that is not already being asked (to_ask). (Orders created, platforms whose feeds
    grew); `created` as orders.append's.

    The number's row is locked first (as a carrier's report locks it), so two revocations
    of one number, or a revocation and a reissue, decide one after the other: the second
    sees the first's orders. Without it two retries of one overdue order both asked again."""
    numbers.load(session, [token], lock=True)
    in_scope = [
        b
        for b in bindings.bindings_for_token(session, token)
        if (scope != RevocationScope.ALL_PRE_TENURE or b.bound_us < tenure_start_us)
        and (platform_pks is None or b.platform_pk in platform_pks)
    ]
    targets = to_ask(session, in_scope)
    new = [
        orders.NewOrder(b, EventKind.REVOKE, EventCause.HOLDER_REQUEST, tenure_start_us)
        for b in targets
    ]
    return len(targets), orders.append(
        session, revocation_id, new, deadline_seconds, created=created
    )
