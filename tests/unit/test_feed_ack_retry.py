"""An ack is bounded by the client's retry policy: `PlatformClient(retry=...)` reaches
`AckEvents` as it reaches every other call. Acks used to retry under the default policy
(8 tries, 6.4-12.7 s of backoff) whatever the client was given, so a platform that asked
to hear of an outage at once still waited on its acks.

A registry stand-in, without TLS: the feed is given a channel, whatever is behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from numbind.sdk import AckOutcome, PlatformClient
from numbind.sdk.errors import Unavailable
from numbind.sdk.feed import EventFeed
from numbind.sdk.retry import RetryPolicy
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

from tests.unit._bundles import bare_platform_bundle
from tests.unit.test_feed_cut_short import _batch

TWO_QUICK_TRIES = RetryPolicy(attempts=2, base=0.01, cap=0.02)


class AcksRefused(platforms_pb2_grpc.PlatformsServicer):
    """Streams one event and a heartbeat; refuses every ack as a registry that is down."""

    def __init__(self) -> None:
        self.acks = 0

    async def StreamEvents(
        self, request: platforms_pb2.StreamEventsRequest, context: Any
    ) -> AsyncIterator[platforms_pb2.StreamEventsResponse]:
        yield _batch(range(1, 2))
        yield platforms_pb2.StreamEventsResponse(heartbeat=platforms_pb2.Heartbeat(head_seq=1))

    async def AckEvents(
        self, request: platforms_pb2.AckEventsRequest, context: Any
    ) -> platforms_pb2.AckEventsResponse:
        self.acks += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "stopping")
        raise AssertionError("not reached")


@pytest.fixture
async def refusing() -> AsyncIterator[tuple[str, AcksRefused]]:
    registry = AcksRefused()  # type: ignore[abstract]  # serves the feed and acks alone
    server = grpc.aio.server()
    platforms_pb2_grpc.add_PlatformsServicer_to_server(registry, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", registry
    await server.stop(None)


async def test_an_ack_gives_up_after_the_tries_it_was_given(
    refusing: tuple[str, AcksRefused],
) -> None:
    address, registry = refusing
    async with grpc.aio.insecure_channel(address) as channel:
        feed = EventFeed(channel, after_seq=0, retry=TWO_QUICK_TRIES, ack_retry=TWO_QUICK_TRIES)
        events = [event async for event in feed.events(follow=False)]
        assert [e.seq for e in events] == [1]
        with pytest.raises(Unavailable, match="stopping"):
            await events[0].ack(AckOutcome.UNBOUND)
    assert registry.acks == 2  # before: 8, over about 10 s
    assert feed.acked_through == 0  # nothing acked: the cursor stays


async def test_the_platform_client_bounds_its_acks_with_its_own_policy(tmp_path: Path) -> None:
    bundle = bare_platform_bundle(tmp_path)
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        client = PlatformClient(bundle, channel=channel, retry=TWO_QUICK_TRIES)
        client.events(follow=True)  # the feed is made here; nothing is sent until iterated
        assert client.feed is not None and client.feed._ack_retry is TWO_QUICK_TRIES
