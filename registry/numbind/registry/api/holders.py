"""Holders servicer: wire <-> HolderService. Never puts an account_ref on the wire."""

from __future__ import annotations

from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import body_hash, ts_from_us
from numbind.registry.api.log import LEAF_KINDS
from numbind.registry.api.types import Ctx
from numbind.registry.services.holders import HolderService, SignedAttestation
from numbind.v1 import holders_pb2, holders_pb2_grpc, log_pb2


def _signed(msg: holders_pb2.SignedAttestation) -> SignedAttestation:
    return SignedAttestation(bytes(msg.attestation), bytes(msg.signature))


class HoldersServicer(holders_pb2_grpc.HoldersServicer):
    def __init__(self, service: HolderService) -> None:
        self._service = service

    async def QueryBindings(
        self, request: holders_pb2.QueryBindingsRequest, context: Ctx
    ) -> holders_pb2.QueryBindingsResponse:
        views = await self._service.query(
            current_principal(), [_signed(a) for a in request.attestations]
        )
        out = holders_pb2.QueryBindingsResponse()
        out.order_deadline.FromMilliseconds(round(self._service.order_deadline_seconds * 1000))
        for v in views:
            number = out.numbers.add(
                token=v.token, key_id=v.key_id, tenure_start=ts_from_us(v.tenure_start_us)
            )
            for g in v.platforms:
                item = number.platforms.add(
                    platform_id=g.platform_id,
                    display_name=g.display_name,
                    category=g.category,
                    tenure_class=int(g.tenure_class),
                    active_count=g.active_count,
                    earliest_bound_at=ts_from_us(g.earliest_us),
                    latest_bound_at=ts_from_us(g.latest_us),
                )
                if g.open_revocation:
                    item.open_revocation.revocation_id = g.open_revocation[0]
                    item.open_revocation.state = g.open_revocation[1]  # type: ignore[assignment]
        return out

    async def RequestRevocation(
        self, request: holders_pb2.RequestRevocationRequest, context: Ctx
    ) -> holders_pb2.RequestRevocationResponse:
        rid, count = await self._service.request_revocation(
            current_principal(),
            request.request_id,
            body_hash(request, without=("attestation",)),
            _signed(request.attestation),
            int(request.scope),
            list(request.platform_ids),
        )
        return holders_pb2.RequestRevocationResponse(revocation_id=rid, orders=count)

    async def GetRevocation(
        self, request: holders_pb2.GetRevocationRequest, context: Ctx
    ) -> holders_pb2.GetRevocationResponse:
        view = await self._service.get_revocation(current_principal(), request.revocation_id)
        return holders_pb2.GetRevocationResponse(
            revocation_id=view.revocation_id,
            cause=int(view.cause),  # type: ignore[arg-type]
            created_at=ts_from_us(view.created_us),
            platforms=[
                holders_pb2.PlatformProgress(
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
                )
                for p in view.platforms
            ],
            leaves=[
                log_pb2.LeafRef(leaf_index=i, kind=LEAF_KINDS[k], ref=r) for i, k, r in view.leaves
            ],
        )
