"""The feed notifier never loses a wake-up that lands between a stream's read and wait."""

from __future__ import annotations

import asyncio

from numbind.registry.services.notifier import FeedNotifier


async def test_notify_before_wait_is_not_lost() -> None:
    n = FeedNotifier()
    seen = n.generation(7)
    n.notify([7])  # an append commits after the stream read the feed, before it waits
    assert await asyncio.wait_for(n.wait(7, seen, 30), 1) is True


async def test_wait_wakes_on_notify_and_times_out_otherwise() -> None:
    n = FeedNotifier()
    waiter = asyncio.ensure_future(n.wait(1, n.generation(1), 30))
    await asyncio.sleep(0.01)
    n.notify([2])  # another platform's append does not wake this stream
    await asyncio.sleep(0.01)
    assert not waiter.done()
    n.notify([1])
    assert await asyncio.wait_for(waiter, 1) is True
    assert await n.wait(1, n.generation(1), 0.01) is False
