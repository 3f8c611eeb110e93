"""Federation servicer: the hub's lifecycle log, streamed to members, and their acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from numbind.registry.api.auth import current_principal
from numbind.registry.api.types import Ctx
from numbind.registry.errors import FailedPrecondition
from numbind.registry.services.replication import Batch, HubLog
from numbind.v1 import federation_pb2, federation_pb2_grpc


def keys_to_wire(batch: Batch, manifest: bytes) -> federation_pb2.KeyMap:
    k = batch.keys
    return federation_pb2.KeyMap(
        store_key_id=k.store_key_id,
        deltas=[
            federation_pb2.KeyDelta(key_id=key_id, to_key_id=to, delta=delta)
            for key_id, to, delta in k.deltas
        ],
        keys=[
            federation_pb2.TokenKeyState(
                key_id=key_id, public_key=public, state=state, created_us=created
            )
            for key_id, public, state, created in k.keys
        ],
        manifest=manifest,
    )


class FederationServicer(federation_pb2_grpc.FederationServicer):
    def __init__(
        self,
        log: HubLog,
        stopping: asyncio.Event,
        federation: str,
        manifest: Callable[[], bytes],
        not_authority: str | None,
    ) -> None:
        self._log = log
        self._stopping = stopping
        self._federation = federation
        self._manifest = manifest
        # Set on a member: the reason it serves no log (and where the log is).
        self._not_authority = not_authority

    async def FollowLifecycle(
        self, request: federation_pb2.FollowLifecycleRequest, context: Ctx
    ) -> AsyncIterator[federation_pb2.FollowLifecycleResponse]:
        if self._not_authority is not None:
            raise FailedPrecondition(self._not_authority)
        manifest = b""
        async for batch, keys_changed in self._log.follow(
            request.after_seq, self._stopping, manifest=self._manifest
        ):
            current = self._manifest()
            response = federation_pb2.FollowLifecycleResponse(
                entries=[
                    federation_pb2.LogEntry(
                        seq=e.seq,
                        event_id=f"{self._federation}/{e.seq}",
                        key_id=e.key_id,
                        token=e.token,
                        kind=e.kind,  # type: ignore[arg-type]
                        effective_us=e.effective_us,
                        recorded_us=e.recorded_us,
                        applied=e.applied,
                        revocation_id=e.revocation_id,
                    )
                    for e in batch.entries
                ],
                head_seq=batch.head_seq,
                head_recorded_us=batch.head_recorded_us,
            )
            if keys_changed or current != manifest:
                response.keys.CopyFrom(keys_to_wire(batch, current))
                manifest = current
            yield response

    async def AckLifecycle(
        self, request: federation_pb2.AckLifecycleRequest, context: Ctx
    ) -> federation_pb2.AckLifecycleResponse:
        await self._log.ack(current_principal().name, request.applied_seq)
        return federation_pb2.AckLifecycleResponse()
