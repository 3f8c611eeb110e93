"""Tokens servicer: wire <-> TokenService, nothing else."""

from __future__ import annotations

from numbind.protocol.oprf_hashing import SUITE_ID
from numbind.registry.api.auth import current_principal
from numbind.registry.api.convert import key_info
from numbind.registry.api.types import Ctx
from numbind.registry.services.tokens import TokenSource
from numbind.v1 import tokens_pb2, tokens_pb2_grpc


class TokensServicer(tokens_pb2_grpc.TokensServicer):
    def __init__(self, service: TokenSource) -> None:
        self._service = service

    async def GetKeys(
        self, request: tokens_pb2.GetKeysRequest, context: Ctx
    ) -> tokens_pb2.GetKeysResponse:
        active, keys = await self._service.keys()
        return tokens_pb2.GetKeysResponse(
            suite=SUITE_ID, active_key_id=active, keys=[key_info(k) for k in keys]
        )

    async def Evaluate(
        self, request: tokens_pb2.EvaluateRequest, context: Ctx
    ) -> tokens_pb2.EvaluateResponse:
        result = await self._service.evaluate(
            current_principal(), request.key_id, list(request.blinded_elements)
        )
        return tokens_pb2.EvaluateResponse(
            key_id=result.key_id,
            evaluated_elements=result.evaluated,
            proof=result.proof,
            active_key_id=result.active_key_id,
        )
