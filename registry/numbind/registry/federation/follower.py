"""A member follows the hub's lifecycle log: one background task for the server's life.

It asks for the log after its persisted cursor, applies each batch (one transaction per
batch, cursor included: services.replication.Replica), then acks. Whatever breaks the
stream (the hub down, a restart, a gap, a key map this store cannot take yet) ends only
this attempt: the task reconnects with a short backoff and resumes from the cursor, so
nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import grpc.aio
from numbind.protocol.manifest import FederationError
from numbind.registry.domain.types import KeyState
from numbind.registry.errors import NumbindError
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.registry.federation.member import install_offered
from numbind.registry.services.replication import Replica
from numbind.registry.storage.replication import Entry, HubKeys
from numbind.v1 import federation_pb2, federation_pb2_grpc

__all__ = ["Follower"]

log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0


def _keys(msg: federation_pb2.KeyMap) -> HubKeys:
    return HubKeys(
        epoch=0,
        store_key_id=msg.store_key_id,
        deltas=tuple((d.key_id, d.to_key_id, bytes(d.delta)) for d in msg.deltas),
        keys=tuple(
            (k.key_id, bytes(k.public_key), int(KeyState(k.state)), k.created_us) for k in msg.keys
        ),
    )


def _entries(msg: federation_pb2.FollowLifecycleResponse) -> list[Entry]:
    return [
        Entry(
            seq=e.seq,
            key_id=e.key_id,
            token=bytes(e.token),
            kind=int(e.kind),
            effective_us=e.effective_us,
            recorded_us=e.recorded_us,
            applied=e.applied,
            revocation_id=e.revocation_id,
        )
        for e in msg.entries
    ]


class Follower:
    def __init__(
        self,
        replica: Replica,
        peers: PeerChannels,
        hub_id: str,
        files: FederationDir,
        stopping: asyncio.Event,
    ) -> None:
        self._replica = replica
        self._peers = peers
        self._hub = hub_id
        self._files = files
        self._stopping = stopping
        self._task: asyncio.Task[None] | None = None
        # Set whenever the stream is live (tests and `show` wait on it).
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="numbind-follower")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                await self._follow_once()
                backoff = _BACKOFF_FIRST
            except grpc.aio.AioRpcError as exc:
                log.info(
                    "lifecycle log from %s: %s (%s)", self._hub, exc.code().name, exc.details()
                )
            except (NumbindError, FederationError) as exc:
                log.warning("lifecycle log from %s: %s", self._hub, exc.message)
            except Exception:
                log.exception("lifecycle log from %s: unexpected error", self._hub)
            self.connected.clear()
            if self._stopping.is_set():
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _follow_once(self) -> None:
        cursor = await self._replica.cursor()
        acked = cursor.applied_seq
        stub: federation_pb2_grpc.FederationAsyncStub = federation_pb2_grpc.FederationStub(
            self._peers.get(self._hub)
        )
        call = stub.FollowLifecycle(federation_pb2.FollowLifecycleRequest(after_seq=acked))
        async for msg in call:
            self.connected.set()
            if msg.HasField("keys"):
                if msg.keys.manifest:
                    try:
                        if install_offered(self._files, bytes(msg.keys.manifest)):
                            log.info("installed the federation manifest the hub sent")
                    except FederationError as exc:
                        log.warning("manifest from %s refused: %s", self._hub, exc.message)
                await self._replica.follow_keys(_keys(msg.keys))
            entries = _entries(msg)
            if entries:
                applied = await self._replica.apply(entries, msg.head_seq, msg.head_recorded_us)
                seq = applied.applied_seq
            else:
                await self._replica.note_head(msg.head_seq, msg.head_recorded_us)
                seq = acked
            if seq != acked or not entries:
                await stub.AckLifecycle(
                    federation_pb2.AckLifecycleRequest(applied_seq=seq), timeout=10.0
                )
                acked = seq
