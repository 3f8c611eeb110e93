"""Carriers servicer: wire <-> LifecycleService."""

from __future__ import annotations

from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import body_hash, token_from_wire, us_from_ts
from numbind.registry.api.types import Ctx
from numbind.registry.services.lifecycle import LifecycleInput, LifecycleService
from numbind.v1 import carriers_pb2, carriers_pb2_grpc


class CarriersServicer(carriers_pb2_grpc.CarriersServicer):
    def __init__(self, service: LifecycleService) -> None:
        self._service = service

    async def ReportLifecycle(
        self, request: carriers_pb2.ReportLifecycleRequest, context: Ctx
    ) -> carriers_pb2.ReportLifecycleResponse:
        events = [
            LifecycleInput(token_from_wire(e.token), int(e.kind), us_from_ts(e.effective_at))
            for e in request.events
        ]
        r = await self._service.report(
            current_principal(), request.request_id, body_hash(request), events
        )
        return carriers_pb2.ReportLifecycleResponse(
            applied=r.applied,
            superseded=r.superseded,
            orders_created=r.orders_created,
            notices_created=r.notices_created,
            revocation_id=r.revocation_id,
            leaf_indices=r.leaf_indices,
        )
