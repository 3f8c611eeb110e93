"""Holders servicer: wire <-> FederatedHolders. Never puts an account_ref on the wire."""

from __future__ import annotations

from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import body_hash, ts_from_us
from numbind.registry.api.holder_wire import group_to_wire, progress_to_wire, unavailable_to_wire
from numbind.registry.api.log import LEAF_KINDS
from numbind.registry.api.types import Ctx
from numbind.registry.services.fanout import FederatedHolders
from numbind.registry.services.holders import SignedAttestation
from numbind.v1 import holders_pb2, holders_pb2_grpc, log_pb2


def _signed(msg: holders_pb2.SignedAttestation) -> SignedAttestation:
    return SignedAttestation(bytes(msg.attestation), bytes(msg.signature))


class HoldersServicer(holders_pb2_grpc.HoldersServicer):
    def __init__(self, service: FederatedHolders) -> None:
        self._service = service

    async def QueryBindings(
        self, request: holders_pb2.QueryBindingsRequest, context: Ctx
    ) -> holders_pb2.QueryBindingsResponse:
        views, unavailable = await self._service.query(
            current_principal(), [_signed(a) for a in request.attestations]
        )
        out = holders_pb2.QueryBindingsResponse(
            unavailable=[unavailable_to_wire(u) for u in unavailable]
        )
        out.order_deadline.FromMilliseconds(round(self._service.order_deadline_seconds * 1000))
        for v in views:
            out.numbers.add(
                token=v.token,
                key_id=v.key_id,
                tenure_start=ts_from_us(v.tenure_start_us),
                platforms=[group_to_wire(g) for g in v.platforms],
            )
        return out

    async def RequestRevocation(
        self, request: holders_pb2.RequestRevocationRequest, context: Ctx
    ) -> holders_pb2.RequestRevocationResponse:
        rid, count, unavailable = await self._service.request_revocation(
            current_principal(),
            request.request_id,
            body_hash(request, without=("attestation",)),
            _signed(request.attestation),
            int(request.scope),
            list(request.platform_ids),
        )
        return holders_pb2.RequestRevocationResponse(
            revocation_id=rid,
            orders=count,
            unavailable=[unavailable_to_wire(u) for u in unavailable],
        )

    async def GetRevocation(
        self, request: holders_pb2.GetRevocationRequest, context: Ctx
    ) -> holders_pb2.GetRevocationResponse:
        view = await self._service.get_revocation(current_principal(), request.revocation_id)
        return holders_pb2.GetRevocationResponse(
            revocation_id=view.revocation_id,
            cause=view.cause,  # type: ignore[arg-type]
            created_at=ts_from_us(view.created_us),
            platforms=[progress_to_wire(p) for p in view.platforms],
            unavailable=[unavailable_to_wire(u) for u in view.unavailable],
            orders_pending=view.orders_pending,
            leaves=[
                log_pb2.LeafRef(leaf_index=i, kind=LEAF_KINDS[k], ref=r) for i, k, r in view.leaves
            ],
        )
