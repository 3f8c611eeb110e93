"""Waiting for a member's log to be witnessed, and acking orders proved under it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from numbind.protocol.bundle import Bundle
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import log
from numbind.sdk import AckOutcome, EventFeed
from numbind.sdk.channel import secure_channel
from numbind.sdk.log import LogClient

from tests.e2e._three import Three

WAIT = 30.0


async def cosigned(three: Three, member: str, quorum: int = 2) -> int:
    """Wait until `member`'s newest checkpoint covering its whole log has `quorum`
    cosignatures (both other registries'); its size."""
    reg = three.registry(member)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        head = reg.db.transact(log.head, write=False).size
        try:
            size, _ = await reg.log.checkpoint(min_cosignatures=quorum)
        except FailedPrecondition:
            size = -1
        if head > 0 and size >= head:
            return size
        if loop.time() > deadline:
            raise AssertionError(f"{member}'s log of {head} leaves: cosigned only to {size}")
        await asyncio.sleep(0.1)


async def take_proved(bundle: Bundle, cursor: Path, **log_options: Any) -> int:
    """Ack the platform's next order through a feed that first proves it logged under
    the bundle's default policy (LogProofError otherwise); the order's leaf index."""
    async with secure_channel(bundle) as channel:
        client = LogClient.for_bundle(channel, bundle.directory, **log_options)
        feed = EventFeed(channel, cursor, log=client)

        async def first() -> int:
            async for event in feed.events():
                await event.ack(AckOutcome.UNBOUND)
                assert event.leaf_index is not None
                return event.leaf_index
            raise AssertionError("the feed ended")

        index = await asyncio.wait_for(first(), WAIT)
        assert feed.orders_proved == 1
        return index
