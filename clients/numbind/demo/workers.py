"""The sample apps at work: each follows its event feed and acks as its behaviour says (one
refuses with a reason, one is slow; the offline one never runs, so its orders go overdue)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from numbind.demo.cast import REJECT_REASON, SLOW_SECONDS, SampleApp
from numbind.protocol.bundle import Bundle
from numbind.sdk import (
    AckOutcome,
    EventFeed,
    EventKind,
    FeedEvent,
    NumbindClientError,
    secure_channel,
)

__all__ = ["sample_app"]


async def sample_app(app: SampleApp, bundle: Bundle, cursor: Path) -> None:
    """Follow app's feed and ack each event the way app behaves, until cancelled."""
    try:
        async with secure_channel(bundle) as channel:
            feed = EventFeed(channel, cursor)
            async for event in feed.events():
                try:
                    await _handle(app, event)
                except NumbindClientError as exc:
                    print(f"  [{app.name}] ack failed: {exc.message}", flush=True)
    except NumbindClientError as exc:
        print(f"  [{app.name}] worker stopped: {exc.message}", flush=True)


async def _handle(app: SampleApp, event: FeedEvent) -> None:
    if event.kind == EventKind.NUMBER_DEACTIVATED:
        await event.ack()
        print(f"  [{app.name}] noted: a number was cancelled; warned its account", flush=True)
        return
    rid = event.revocation_id[:8]
    if app.behaviour == "reject":
        await asyncio.sleep(1.0)
        await event.ack(AckOutcome.REJECTED, REJECT_REASON)
        print(f"  [{app.name}] rejected an unbinding ({rid}…): {REJECT_REASON}", flush=True)
        return
    await asyncio.sleep(SLOW_SECONDS if app.behaviour == "slow" else random.uniform(0.5, 2.5))
    await event.ack(AckOutcome.UNBOUND)
    print(f"  [{app.name}] unbound an account ({rid}…)", flush=True)
