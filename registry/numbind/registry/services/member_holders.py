"""A federation member's side of the hub's holder fan-out. No grpc.

The hub has checked the carrier's attestation, that the carrier serves the number, and
spent the nonce; it hands the member the admitted number. The member answers from its own
store only: its platforms bound to the number, its orders for a revocation. Bindings and
account_refs never leave it; what it returns is what the holder's view shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbind.registry.domain import validate
from numbind.registry.domain.keymap import KeyView, StoreToken
from numbind.registry.domain.types import (
    EventCause,
    Principal,
    Role,
)
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation
from numbind.registry.services.holder_orders import order_holder_revocation
from numbind.registry.services.holder_views import (
    PlatformGroup,
    PlatformProgress,
    RegistryName,
    number_platforms,
    revocation_progress,
)
from numbind.registry.services.holders import MAX_NUMBERS, MAX_PLATFORMS, HolderService
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import orders, principals
from numbind.registry.storage.db import Session

__all__ = ["MemberHolderService"]


def _map(view: KeyView, number: AdmittedNumber, where: str) -> StoreToken:
    return view.map(where, number.key_id, number.token)


class MemberHolderService:
    def __init__(
        self,
        tokens: TokenMapper,
        notifier: FeedNotifier,
        deadline_seconds: float,
        registry: RegistryName,
    ) -> None:
        self._tokens = tokens
        self._notifier = notifier
        self._deadline = deadline_seconds
        self._registry = registry

    async def query(self, numbers: Sequence[AdmittedNumber]) -> list[list[PlatformGroup]]:
        """This member's platforms bound to each number, in order."""
        validate.batch_size("numbers", len(numbers), MAX_NUMBERS)

        def read(session: Session, view: KeyView) -> list[list[PlatformGroup]]:
            return [
                number_platforms(
                    session, _map(view, n, f"numbers[{i}].token"), n.tenure_start_us, self._registry
                )
                for i, n in enumerate(numbers)
            ]

        return await self._tokens.act(read, write=False)

    async def revoke(self, hub: Principal, request: MemberRevocation) -> int:
        """Create this member's orders for the hub's revocation, once: delivered again
        (the hub's retry after a lost answer), it creates nothing and answers the same."""
        rid = validate.revocation_id("revocation_id", request.revocation_id)
        HolderService.validate_scope(request.scope, request.platform_ids)
        number = request.number

        def act(session: Session, view: KeyView) -> tuple[int, set[int]]:
            token = _map(view, number, "number.token")
            if orders.revocation(session, rid) is not None:
                return sum(len(v) for v in orders.order_ids(session, rid).values()), set()
            wanted: set[int] | None = None
            if request.platform_ids:
                wanted = set(
                    principals.pks_by_name(session, Role.PLATFORM, request.platform_ids).values()
                )
            # The hub's peer principal stands in for the carrier: the member does not know
            # carriers, and the hub alone answers the carrier about this revocation.
            orders.new_revocation(
                session,
                EventCause.HOLDER_REQUEST,
                hub.pk,
                token=token.value,
                key_id=view.store_key_id,
                scope=request.scope,
                revocation_id=rid,
            )
            return order_holder_revocation(
                session,
                rid,
                token,
                request.scope,
                number.tenure_start_us,
                wanted,
                self._deadline,
            )

        count, platforms = await self._tokens.act(act)
        self._notifier.notify(sorted(platforms))
        return count

    async def platforms(self, platform_ids: Sequence[str]) -> list[str]:
        """Those of `platform_ids` that name a platform of this member, in request order."""
        validate.batch_size("platform_ids", len(platform_ids), MAX_PLATFORMS)
        for i, pid in enumerate(platform_ids):
            validate.principal_id(f"platform_ids[{i}]", pid)

        def read(session: Session, _: KeyView) -> list[str]:
            held = principals.pks_by_name(session, Role.PLATFORM, platform_ids)
            return [p for p in platform_ids if p in held]

        return await self._tokens.act(read, write=False)

    async def progress(self, revocation_id: str) -> list[PlatformProgress] | None:
        """This member's part of a revocation, per platform; None if it never got it."""
        rid = validate.revocation_id("revocation_id", revocation_id)

        def read(session: Session, view: KeyView) -> list[PlatformProgress] | None:
            if orders.revocation(session, rid) is None:
                return None
            return revocation_progress(session, rid, self._registry)

        return await self._tokens.act(read, write=False)
