"""MemberHolders servicer (a federation member): wire <-> MemberHolderService.

The role table lets only `registry` peers in; of those, only the federation's lifecycle
authority (the hub) may ask: another member has no business reading this one's bindings.
"""

from __future__ import annotations

from collections.abc import Callable

from numbind.registry.api.auth import current_principal
from numbind.registry.api.holder_wire import group_to_wire, number_from_wire, progress_to_wire
from numbind.registry.api.types import Ctx
from numbind.registry.domain.types import Principal
from numbind.registry.errors import PermissionDenied
from numbind.registry.services.fanout_model import MemberRevocation
from numbind.registry.services.member_holders import MemberHolderService
from numbind.v1 import fanout_pb2, fanout_pb2_grpc


class MemberHoldersServicer(fanout_pb2_grpc.MemberHoldersServicer):
    def __init__(self, service: MemberHolderService, hub_id: Callable[[], str | None]) -> None:
        """`hub_id`: the lifecycle authority's member id in the installed manifest (None
        when this registry is in no federation: then nobody may call)."""
        self._service = service
        self._hub_id = hub_id

    def _hub(self) -> Principal:
        caller = current_principal()
        hub = self._hub_id()
        if hub is None or caller.name != hub:
            raise PermissionDenied(
                f"{caller.uri} is not this federation's lifecycle authority; only the hub "
                "fans holder calls out to members"
            )
        return caller

    async def MemberQuery(
        self, request: fanout_pb2.MemberQueryRequest, context: Ctx
    ) -> fanout_pb2.MemberQueryResponse:
        self._hub()
        groups = await self._service.query([number_from_wire(n) for n in request.numbers])
        return fanout_pb2.MemberQueryResponse(
            numbers=[
                fanout_pb2.MemberNumberBindings(platforms=[group_to_wire(g) for g in per])
                for per in groups
            ]
        )

    async def MemberRevoke(
        self, request: fanout_pb2.MemberRevokeRequest, context: Ctx
    ) -> fanout_pb2.MemberRevokeResponse:
        hub = self._hub()
        count = await self._service.revoke(
            hub,
            MemberRevocation(
                request.revocation_id,
                number_from_wire(request.number),
                int(request.scope),
                tuple(request.platform_ids),
            ),
        )
        return fanout_pb2.MemberRevokeResponse(orders=count)

    async def MemberRevocation(
        self, request: fanout_pb2.MemberRevocationRequest, context: Ctx
    ) -> fanout_pb2.MemberRevocationResponse:
        self._hub()
        progress = await self._service.progress(request.revocation_id)
        return fanout_pb2.MemberRevocationResponse(
            known=progress is not None,
            platforms=[progress_to_wire(p) for p in progress or ()],
        )

    async def MemberPlatforms(
        self, request: fanout_pb2.MemberPlatformsRequest, context: Ctx
    ) -> fanout_pb2.MemberPlatformsResponse:
        self._hub()
        held = await self._service.platforms(list(request.platform_ids))
        return fanout_pb2.MemberPlatformsResponse(held=held)
