"""Resources one principal may take (issue 10, finding 4): requests sized per RPC and
refused before they are parsed, and a per-principal limit on open event streams."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from numbind.protocol.limits import MAX_RECEIVE_BYTES, request_limit
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk.channel import secure_channel
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc, tokens_pb2, tokens_pb2_grpc

from tests.e2e._story import days_ago, ts

PUBLISH = "/numbind.v1.Platforms/PublishBindings"


def _publish(size: int) -> platforms_pb2.PublishBindingsRequest:
    """A PublishBindings request of about `size` bytes: one binding with a huge ref."""
    return platforms_pb2.PublishBindingsRequest(
        request_id=uuid.uuid4().hex,
        bindings=[
            common_pb2.Binding(
                token=common_pb2.Token(key_id="0" * 16, value=bytes(32)),
                account_ref=b"x" * size,
                bound_at=ts(days_ago(1)),
                kind=common_pb2.BINDING_KIND_LOGIN,
            )
        ],
    )


async def test_oversize_requests_are_refused_before_parsing(registry: RunningRegistry) -> None:
    p1 = registry.add_platform("p1")
    async with secure_channel(p1) as channel:
        stub = platforms_pb2_grpc.PlatformsStub(channel)
        # Above this RPC's largest legal request, below what gRPC accepts at all: refused
        # unparsed, by the registry, naming the limit.
        request = _publish(request_limit(PUBLISH) + 1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PublishBindings(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert (err.value.details() or "").startswith(
            f"request: got {request.ByteSize():,} bytes, want at most "
            f"{request_limit(PUBLISH):,} for PublishBindings"
        )
        # Above anything legal: gRPC refuses it before buffering it.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PublishBindings(_publish(MAX_RECEIVE_BYTES + 1))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        # The connection is unharmed: the next call is answered.
        keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        assert keys.active_key_id


async def _stream(
    stub: platforms_pb2_grpc.PlatformsAsyncStub,
) -> grpc.aio.UnaryStreamCall[
    platforms_pb2.StreamEventsRequest, platforms_pb2.StreamEventsResponse
]:
    """A StreamEvents call, open once its first heartbeat arrived."""
    call = stub.StreamEvents(platforms_pb2.StreamEventsRequest(heartbeat_seconds=1))
    await asyncio.wait_for(call.read(), 15)
    return call


async def test_one_principal_holds_at_most_so_many_streams(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data", max_streams_per_principal=2) as reg:
        p1, p2 = reg.add_platform("p1"), reg.add_platform("p2")
        async with secure_channel(p1) as c1, secure_channel(p2) as c2:
            s1 = platforms_pb2_grpc.PlatformsStub(c1)
            first, second = await _stream(s1), await _stream(s1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _stream(s1)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (
                "spiffe://numbind/platform/p1 already has 2 open streams, the most one "
                "principal may hold (max_streams_per_principal)"
            ) in (err.value.details() or "")
            # Another principal is not affected.
            other = await _stream(platforms_pb2_grpc.PlatformsStub(c2))
            # Closing one frees its place.
            first.cancel()
            for _ in range(50):
                try:
                    third = await _stream(s1)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("a closed stream's place was never freed")
            for call in (second, third, other):
                call.cancel()
