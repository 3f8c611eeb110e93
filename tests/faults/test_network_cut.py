"""The network cut between the registry and a platform in the middle of a live stream.

A small TCP proxy sits between the platform's SDK feed and the registry. A carrier
reissues numbers in rounds (straight to the registry) while the platform follows and acks
its feed through the proxy; between rounds every connection through the proxy is cut,
three times: once with the stream caught up and idle, twice with events of the round just
reported on their way. The SDK reconnects and resumes from its last acked sequence:
nothing owed is lost, nothing unowed arrives; events received but not yet acked when the
cut came may come again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import pytest
from numbind.registry.testing import RunningRegistry
from numbind.sdk import AckOutcome, EventFeed, RetryPolicy, secure_channel

from tests.faults import checker
from tests.faults._proxy import CuttableProxy
from tests.faults._world import World, reissue, seed, world_on

pytestmark = pytest.mark.slow

NUMBERS = 120
ACCOUNTS = 2
ROUNDS = 4  # cuts after rounds 1, 2 and 3
# Reconnect quickly: grpc's own reconnect backoff starts at a second.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class Follower:
    """p0's feed through the proxy, acking each event, until every owed one came."""

    def __init__(self, world: World, port: int, cursor: Path, owed: set[Hashable]) -> None:
        self.world, self.port, self.cursor, self.owed = world, port, cursor, owed
        self.got: list[Hashable] = []
        self.feed: EventFeed | None = None

    @property
    def reconnects(self) -> int:
        return self.feed.reconnects if self.feed is not None else 0

    @property
    def distinct(self) -> int:
        return len(set(self.got))

    async def run(self) -> None:
        bundle = self.world.platforms["p0"]
        target = f"127.0.0.1:{self.port}"
        async with secure_channel(bundle, target=target, options=FAST_RECONNECT) as channel:
            self.feed = feed = EventFeed(
                channel,
                self.cursor,
                heartbeat_seconds=1,
                retry=RetryPolicy(attempts=1000, base=0.05, cap=0.5),
            )
            async for event in feed.events(follow=True):
                self.got.append(("p0", event.account_ref))
                await event.ack(AckOutcome.UNBOUND)
                if self.owed <= set(self.got):
                    return


async def _until(task: asyncio.Task[None], done: Callable[..., bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert not task.done(), task
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.01)


async def test_network_cut_mid_stream_then_resume(
    tmp_path: Path, registry: RunningRegistry
) -> None:
    world = world_on(registry, NUMBERS, platforms=2, accounts_per_platform=ACCOUNTS)
    await seed(world)
    owed: set[Hashable] = {k for k in world.owed if k[0] == "p0"}
    proxy = CuttableProxy("127.0.0.1", registry.port)
    await proxy.start()
    follower = Follower(world, proxy.port, tmp_path / "cursor", owed)
    task = asyncio.create_task(follower.run())
    per_round = NUMBERS // ROUNDS
    cuts = 0
    try:
        for r in range(ROUNDS):
            await reissue(world, world.phones[r * per_round : (r + 1) * per_round], batch=10)
            if r == ROUNDS - 1:
                break
            if r == 0:  # idle and caught up: only a resumed stream brings the next round
                owed_so_far = (r + 1) * per_round * ACCOUNTS
                await _until(task, lambda n=owed_so_far: follower.distinct >= n, "caught up")
            before = follower.reconnects
            cuts += proxy.cut()
            await _until(task, lambda n=before: follower.reconnects > n, "reconnected")
        await asyncio.wait_for(task, 120)
    finally:
        task.cancel()
        await proxy.close()
    checker.check("network cut mid-stream, resume", owed, follower.got)
    assert cuts >= ROUNDS - 1, "each cut closed a live connection"
    assert follower.reconnects >= ROUNDS - 1, "the stream was broken and resumed each time"
