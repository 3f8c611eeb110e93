"""A one-off read of the event feed (`follow=False`) ends when a heartbeat says it caught
up, not when the stream ends: a registry that stops (a rolling restart) ends its streams
cleanly, and a reader cut off mid-backlog used to return as if done, its nightly job
silently short. It resumes instead, and says so when it cannot.

A registry stand-in, without TLS: the feed is given a channel, whatever is behind it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from numbind.sdk.errors import Unavailable
from numbind.sdk.feed import EventFeed
from numbind.sdk.retry import RetryPolicy
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def _batch(seqs: range) -> platforms_pb2.StreamEventsResponse:
    return platforms_pb2.StreamEventsResponse(
        events=platforms_pb2.EventBatch(
            events=[
                platforms_pb2.Event(
                    seq=seq,
                    order_id=str(uuid.uuid4()),
                    kind=1,  # type: ignore[arg-type]
                    cause=1,  # type: ignore[arg-type]
                    binding=common_pb2.Binding(
                        token=common_pb2.Token(key_id="k", value=bytes(32)), account_ref=b"a"
                    ),
                )
                for seq in seqs
            ]
        )
    )


class StoppingRegistry(platforms_pb2_grpc.PlatformsServicer):
    """Its first `stops` streams send three events and end, as a stopping registry ends
    them; the next sends the rest and a heartbeat naming the head."""

    def __init__(self, stops: int) -> None:
        self.stops = stops
        self.calls = 0

    async def StreamEvents(
        self, request: platforms_pb2.StreamEventsRequest, context: Any
    ) -> AsyncIterator[platforms_pb2.StreamEventsResponse]:
        self.calls += 1
        if self.calls <= self.stops:
            yield _batch(range(1, 4))
            return
        yield _batch(range(4, 6))
        yield platforms_pb2.StreamEventsResponse(heartbeat=platforms_pb2.Heartbeat(head_seq=5))


@pytest.fixture
async def serving() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: StoppingRegistry) -> str:
        server = grpc.aio.server()
        platforms_pb2_grpc.add_PlatformsServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


async def _read(address: str) -> tuple[list[int], EventFeed]:
    async with grpc.aio.insecure_channel(address) as channel:
        feed = EventFeed(channel, after_seq=0, retry=QUICK)
        seqs = [event.seq async for event in feed.events(follow=False)]
        return seqs, feed


async def test_a_read_cut_short_by_a_stopping_registry_resumes(serving: Any) -> None:
    registry = StoppingRegistry(stops=1)  # type: ignore[abstract]  # serves the stream alone
    address = await serving(registry)
    seqs, feed = await _read(address)
    assert seqs == [1, 2, 3, 4, 5]  # before: [1, 2, 3], and no error
    assert registry.calls == 2 and feed.reconnects == 1


async def test_a_read_cut_short_every_time_says_so(serving: Any) -> None:
    address = await serving(StoppingRegistry(stops=10))  # type: ignore[abstract]
    with pytest.raises(Unavailable, match="before this reader caught up"):
        await _read(address)


class OverItsLimit(platforms_pb2_grpc.PlatformsServicer):
    """Refuses every stream, as a registry does a principal over its stream limit."""

    async def StreamEvents(
        self, request: platforms_pb2.StreamEventsRequest, context: Any
    ) -> AsyncIterator[platforms_pb2.StreamEventsResponse]:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many open streams")
        yield platforms_pb2.StreamEventsResponse()  # never reached


async def test_a_follower_refused_again_and_again_says_why(
    serving: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # It retries for as long as it is iterated (another stream may close); the CLI's
    # `platform events --follow` over the limit used to wait without a word.
    address = await serving(OverItsLimit())  # type: ignore[abstract]
    async with grpc.aio.insecure_channel(address) as channel:
        follower = RetryPolicy(attempts=1_000_000, base=0.01, cap=0.02)  # quick, for ever
        feed = EventFeed(channel, after_seq=0, retry=follower)
        with caplog.at_level(logging.WARNING, logger="numbind.sdk.feed"):
            events = feed.events(follow=True)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), 1.0)
    said = [r.getMessage() for r in caplog.records if r.name == "numbind.sdk.feed"]
    assert said and "too many open streams" in said[0] and "RESOURCE_EXHAUSTED" in said[0]
    assert len(said) < feed.reconnects  # the first few, then one in ten
