"""A refusal whose retry-after hint is longer than the client would ever wait between tries
(a daily token cap, which resets at 00:00 UTC) is raised at once, with its hint. The SDK
used to sleep it out: `numbind tokenize` or a publish at a platform's daily cap hung for
hours without a word, whatever retry policy the client was given.

A registry stand-in, without TLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from numbind.protocol.limits import RETRY_AFTER_KEY
from numbind.sdk import PlatformClient
from numbind.sdk.errors import QuotaExceeded
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

from tests.unit._bundles import bare_platform_bundle

TEN_HOURS_MS = 10 * 3600 * 1000


class OverItsCap(tokens_pb2_grpc.TokensServicer):
    """Refuses every key request as a registry refuses a platform over a quota, with the
    given retry-after hint."""

    def __init__(self, hint_ms: int, refusals: int) -> None:
        self.hint_ms = hint_ms
        self.refusals = refusals
        self.calls = 0

    async def GetKeys(
        self, request: tokens_pb2.GetKeysRequest, context: Any
    ) -> tokens_pb2.GetKeysResponse:
        self.calls += 1
        if self.calls <= self.refusals:
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(self.hint_ms)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "daily cap of 12000 reached")
        return tokens_pb2.GetKeysResponse(active_key_id="k")


async def _serve(servicer: OverItsCap) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    tokens_pb2_grpc.add_TokensServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def registry() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: OverItsCap) -> str:
        server, address = await _serve(servicer)
        servers.append(server)
        return address

    yield start
    for server in servers:
        await server.stop(None)


async def test_a_hint_of_hours_is_raised_at_once_with_the_hint(registry: Any) -> None:
    cap = OverItsCap(TEN_HOURS_MS, refusals=100)  # type: ignore[abstract]  # GetKeys alone
    address = await registry(cap)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        with pytest.raises(QuotaExceeded, match="daily cap") as err:
            # Bounded: before, this slept ten hours.
            await asyncio.wait_for(
                call_with_retry(lambda: stub.GetKeys(tokens_pb2.GetKeysRequest())), 30
            )
    assert cap.calls == 1
    assert err.value.retry_after == TEN_HOURS_MS / 1000


async def test_a_rate_limits_pacing_is_waited_out_however_long_the_backoff_cap(
    registry: Any,
) -> None:
    # A rate limit's hint (here 0.3 s, past this policy's 0.05 s cap) is pacing the bucket
    # will honour: waited, not raised (an early form of the fix raised every hint over the
    # cap, so a low configured rate failed a big tokenisation it used to pace through).
    cap = OverItsCap(300, refusals=1)  # type: ignore[abstract]
    address = await registry(cap)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        policy = RetryPolicy(base=0.01, cap=0.05, longest_wait=1.0)
        got = await call_with_retry(lambda: stub.GetKeys(tokens_pb2.GetKeysRequest()), policy)
    assert got.active_key_id == "k" and cap.calls == 2
    over = OverItsCap(1500, refusals=1)  # type: ignore[abstract]
    address = await registry(over)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        with pytest.raises(QuotaExceeded):
            await call_with_retry(lambda: stub.GetKeys(tokens_pb2.GetKeysRequest()), policy)
    assert over.calls == 1


async def test_a_short_hint_is_still_waited_out(registry: Any) -> None:
    cap = OverItsCap(50, refusals=2)  # type: ignore[abstract]
    address = await registry(cap)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        quick = RetryPolicy(base=0.01, cap=1.0)
        got = await call_with_retry(lambda: stub.GetKeys(tokens_pb2.GetKeysRequest()), quick)
    assert got.active_key_id == "k" and cap.calls == 3


async def test_the_platform_client_tokenises_under_its_own_policy(tmp_path: Path) -> None:
    bundle = bare_platform_bundle(tmp_path)
    once = RetryPolicy(attempts=1)
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        client = PlatformClient(bundle, channel=channel, retry=once)
        _, _, tokenizer = client._ensure()
        assert tokenizer._retry is once  # before: the default 8 tries
        await client.close()
