"""One interceptor, outermost, maps every error to a status over real gRPC: refusals from
authentication keep their precise status and message; anything unexpected, during
authentication or inside a servicer, unary or streaming, reaches the client as INTERNAL with
a generic message and a reference, while the exception's text goes to the log only."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numbind.registry import errors
from numbind.registry.services.feed import Heartbeat
from numbind.registry.testing import RunningRegistry
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

SECRET = "store exploded at /var/lib/numbind/registry.db row 4711"
REF = re.compile(r"ref ([0-9a-f]{12})")


class StoreFailure(RuntimeError):
    pass


def _failing_lookup(exc: Exception) -> Any:
    async def lookup(role: str, name: str) -> None:
        raise exc

    return lookup


def _events(channel: grpc.aio.Channel) -> Any:
    return platforms_pb2_grpc.PlatformsStub(channel).StreamEvents(
        platforms_pb2.StreamEventsRequest(after_seq=0)
    )


def _assert_internal(err: grpc.aio.AioRpcError, caplog: pytest.LogCaptureFixture) -> None:
    details = err.details() or ""
    assert err.code() == grpc.StatusCode.INTERNAL, (err.code(), details)
    assert SECRET not in details and "StoreFailure" not in details
    assert "Traceback" not in details
    ref = REF.search(details)
    assert ref is not None, details
    # The log has the whole story under the reference the caller was given.
    logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert logged and logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None and SECRET in str(logged[0].exc_info[1])
    assert SECRET in caplog.text


async def test_a_directory_lookup_that_raises_is_internal_and_its_text_stays_in_the_log(
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = registry.add_platform("p1")
    monkeypatch.setattr(
        registry.registry.directory, "lookup", _failing_lookup(StoreFailure(SECRET))
    )
    caplog.set_level(logging.ERROR)
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    _assert_internal(err.value, caplog)


async def test_a_stream_whose_authentication_raises_is_internal_too(
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = registry.add_platform("p1")
    monkeypatch.setattr(
        registry.registry.directory, "lookup", _failing_lookup(StoreFailure(SECRET))
    )
    caplog.set_level(logging.ERROR)
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in _events(channel):
                pass
    _assert_internal(err.value, caplog)


async def test_a_stream_that_fails_midway_delivers_what_it_had_then_internal(
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = registry.add_platform("p1")

    async def stream(*_: Any) -> AsyncIterator[Heartbeat]:
        yield Heartbeat(server_us=1, head_seq=0)
        raise StoreFailure(SECRET)

    monkeypatch.setattr(registry.registry.feed, "stream", stream)
    caplog.set_level(logging.ERROR)
    received = []
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for msg in _events(channel):
                received.append(msg)
    assert [m.WhichOneof("item") for m in received] == ["heartbeat"]
    _assert_internal(err.value, caplog)


async def test_a_registry_error_during_authentication_keeps_its_own_status(
    registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = registry.add_platform("p1")
    monkeypatch.setattr(
        registry.registry.directory,
        "lookup",
        _failing_lookup(errors.Unavailable("storage: too much contention, retry later")),
    )
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "storage: too much contention, retry later"


async def test_authentication_refusals_are_precise(registry: RunningRegistry) -> None:
    platform, carrier = registry.add_platform("p1"), registry.add_carrier("c1")
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "role 'platform' may not call /numbind.v1.Admin/GetStats"
    async with secure_channel(carrier) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in _events(channel):
                pass
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == "role 'carrier' may not call /numbind.v1.Platforms/StreamEvents"
    registry.suspend("platform", "p1")
    refused = "principal spiffe://numbind/platform/p1 is unknown or suspended"
    async with secure_channel(platform) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, refused)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in _events(channel):
                pass
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, refused)


async def test_health_is_outside_the_guards(registry: RunningRegistry) -> None:
    platform = registry.add_platform("p1")
    registry.suspend("platform", "p1")
    async with secure_channel(platform) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
