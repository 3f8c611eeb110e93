"""Log servicer: wire <-> LogService (checkpoints, proofs, openings, cosignatures)."""

from __future__ import annotations

from numbind.registry.api.auth import current_principal
from numbind.registry.api.types import Ctx
from numbind.registry.services.log import LogService
from numbind.v1 import log_pb2, log_pb2_grpc

LEAF_KINDS = {
    "lifecycle": log_pb2.LEAF_KIND_LIFECYCLE,
    "revocation": log_pb2.LEAF_KIND_REVOCATION,
    "order": log_pb2.LEAF_KIND_ORDER,
    "ack": log_pb2.LEAF_KIND_ACK,
    "key": log_pb2.LEAF_KIND_KEY,
}


class LogServicer(log_pb2_grpc.LogServicer):
    def __init__(self, service: LogService) -> None:
        self._service = service

    async def GetCheckpoint(
        self, request: log_pb2.GetCheckpointRequest, context: Ctx
    ) -> log_pb2.GetCheckpointResponse:
        size, signed = await self._service.checkpoint(request.min_cosignatures)
        held = self._service.manifest()
        return log_pb2.GetCheckpointResponse(
            checkpoint=signed,
            log_key=self._service.log_key,
            tree_size=size,
            manifest=(
                held.data if held is not None and held.version > request.manifest_version else b""
            ),
        )

    async def GetInclusionProof(
        self, request: log_pb2.GetInclusionProofRequest, context: Ctx
    ) -> log_pb2.GetInclusionProofResponse:
        size, proofs = await self._service.inclusion(
            current_principal(), list(request.leaf_indices), request.tree_size
        )
        return log_pb2.GetInclusionProofResponse(
            tree_size=size,
            proofs=[
                log_pb2.InclusionProof(
                    leaf_index=p.index,
                    leaf=p.leaf,
                    hashes=p.hashes,
                    opening=(
                        log_pb2.Opening(salt=p.opening[0], body=p.opening[1]) if p.opening else None
                    ),
                )
                for p in proofs
            ],
        )

    async def GetConsistencyProof(
        self, request: log_pb2.GetConsistencyProofRequest, context: Ctx
    ) -> log_pb2.GetConsistencyProofResponse:
        old, new, hashes = await self._service.consistency(request.old_size, request.new_size)
        return log_pb2.GetConsistencyProofResponse(old_size=old, new_size=new, hashes=hashes)

    async def GetLeaves(
        self, request: log_pb2.GetLeavesRequest, context: Ctx
    ) -> log_pb2.GetLeavesResponse:
        leaves = await self._service.leaves(request.start, request.end)
        return log_pb2.GetLeavesResponse(start=request.start, leaves=leaves)

    async def FindLeaves(
        self, request: log_pb2.FindLeavesRequest, context: Ctx
    ) -> log_pb2.FindLeavesResponse:
        found = await self._service.find(
            order_id=request.order_id, revocation_id=request.revocation_id
        )
        return log_pb2.FindLeavesResponse(
            leaves=[log_pb2.LeafRef(leaf_index=i, kind=LEAF_KINDS[k], ref=r) for i, k, r in found]
        )

    async def AddCosignature(
        self, request: log_pb2.AddCosignatureRequest, context: Ctx
    ) -> log_pb2.AddCosignatureResponse:
        merged = await self._service.add_cosignature(
            current_principal(), request.tree_size, request.signature_line, request.witness_key
        )
        return log_pb2.AddCosignatureResponse(checkpoint=merged)
