"""kill -9 of a platform's consumer between receiving an event and acking it.

The consumer is its own process using the SDK feed (tests/faults/_consumer.py); it stops
after receiving a seeded random event, before acking it, and is killed there, twice.
Restarted, it resumes from its cursor and gets the unacked events again (redelivery is
allowed, by order id); nothing owed is lost and, in the end, everything is acked.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Hashable
from pathlib import Path

import pytest
from numbind.registry.testing import RunningRegistry
from numbind.sdk import EventFeed, secure_channel
from numbind.sdk.feed import CURSOR_FILE, CursorStore

from tests.faults import checker
from tests.faults._procs import child, kill_9
from tests.faults._world import reissue_all, seed, world_on

pytestmark = pytest.mark.slow

CONSUMER = str(Path(__file__).with_name("_consumer.py"))
NUMBERS = 100
ACCOUNTS = 3  # 300 orders for the one platform


def _has_line(receipts: Path, line: str) -> bool:
    return receipts.exists() and line in receipts.read_text().splitlines()


async def _until_line(receipts: Path, line: str) -> None:
    deadline = time.monotonic() + 90
    while not _has_line(receipts, line):
        assert time.monotonic() < deadline, f"consumer never wrote {line!r}"
        await asyncio.sleep(0.05)


def _receipts(receipts: Path) -> list[Hashable]:
    return [
        ("p0", bytes.fromhex(parts[2]))
        for parts in (line.split() for line in receipts.read_text().splitlines())
        if parts[0] == "recv"
    ]


async def test_kill_9_consumer_between_receive_and_ack(
    tmp_path: Path, registry: RunningRegistry
) -> None:
    world = world_on(registry, NUMBERS, platforms=1, accounts_per_platform=ACCOUNTS)
    await seed(world)
    await reissue_all(world)
    owed = world.owed
    bundle = world.platforms["p0"]
    rng = random.Random("consumer-kill")
    first, second = sorted(rng.sample(range(1, len(owed) // 2), 2))
    # The second kill counts events received after the first restart.
    plan = [first, second, 0]

    for n, hang_at in enumerate(plan):
        receipts = tmp_path / f"receipts-{n}"
        log = tmp_path / f"consumer-{n}.log"
        args = [CONSUMER, str(bundle.directory), str(receipts), str(hang_at)]
        with child(args, log) as proc:
            await _until_line(receipts, "hang" if hang_at else "done")
            if hang_at:
                kill_9(proc)
            else:
                assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()

    received: list[Hashable] = []
    for n in range(len(plan)):
        received.extend(_receipts(tmp_path / f"receipts-{n}"))
    row = checker.check("kill -9 platform consumer before ack", owed, received)
    assert row.redelivered >= 2, "each killed consumer's unacked event comes again"

    # Everything is acked now: the cursor is at the head and nothing is left to deliver.
    assert CursorStore(bundle.directory / CURSOR_FILE).load() == len(owed)
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, bundle.directory / CURSOR_FILE, heartbeat_seconds=1)
        assert [e async for e in feed.events(follow=False)] == []
        assert feed.head_seq == len(owed)
