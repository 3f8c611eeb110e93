"""Helpers for tests around key rotation: rotate through the Admin service, watch the store
re-key, and compute what re-keyed tokens must be from the key files themselves."""

from __future__ import annotations

import asyncio
import time
import uuid

from numbind.protocol import rekey as rekey_algebra
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import admin_pb2, admin_pb2_grpc


async def stats(reg: RunningRegistry) -> admin_pb2.GetStatsResponse:
    async with secure_channel(reg.admin_bundle) as channel:
        return await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())


async def rotate(reg: RunningRegistry) -> admin_pb2.RotateKeyResponse:
    async with secure_channel(reg.admin_bundle) as channel:
        return await admin_pb2_grpc.AdminStub(channel).RotateKey(
            admin_pb2.RotateKeyRequest(request_id=uuid.uuid4().hex)
        )


async def retire(reg: RunningRegistry, key_id: str) -> None:
    async with secure_channel(reg.admin_bundle) as channel:
        await admin_pb2_grpc.AdminStub(channel).RetireKey(
            admin_pb2.RetireKeyRequest(request_id=uuid.uuid4().hex, key_id=key_id)
        )


async def wait_rekeyed(reg: RunningRegistry, within: float = 120.0) -> admin_pb2.RekeyProgress:
    """Until the latest re-key is DONE; its final progress."""
    deadline = time.monotonic() + within
    while True:
        s = await stats(reg)
        if s.HasField("rekey") and s.rekey.state == admin_pb2.REKEY_STATE_DONE:
            return s.rekey
        assert time.monotonic() < deadline, f"re-key not done after {within} s: {s.rekey}"
        await asyncio.sleep(0.05)


def secret(reg: RunningRegistry, key_id: str) -> bytes:
    """A key's scalar, read from its file as an operator would (not through the SDK)."""
    path = reg.settings.keys_dir / f"{key_id}.key"
    return bytes.fromhex(path.read_text().strip())


def rekeyed(reg: RunningRegistry, old_key_id: str, new_key_id: str, token: bytes) -> bytes:
    """What the store must hold for `token` after re-keying old -> new."""
    delta = rekey_algebra.rekey_delta(secret(reg, old_key_id), secret(reg, new_key_id))
    return rekey_algebra.rekey(delta, token)
