"""Platforms and carriers across a federation of three (tests.e2e._three)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.sdk import AckOutcome, EventFeed, FeedEvent
from numbind.sdk.channel import secure_channel
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

from tests.e2e._federation import fed
from tests.e2e._story import days_ago, ts
from tests.e2e._three import Three

WAIT = 30.0


def add(three: Three, at: str, role: str, name: str, display_name: str = "") -> Bundle:
    """Register a principal at registry `at` (offline, on its data dir)."""
    bundle = operator.add_principal(
        three.settings(at),
        role,
        name,
        three.root / "bundles" / f"{at}-{role}-{name}",
        display_name=display_name or name,
        category="other" if role == "platform" else "",
        registry_address=three.addresses[at],
    )
    if at in three.servers:
        three.registry(at).directory.invalidate()
    return bundle


async def take(
    bundle: Bundle, cursor: Path, expect: int, outcome: AckOutcome | None = None
) -> list[FeedEvent]:
    """The next `expect` events of a platform's feed, acked."""
    got: list[FeedEvent] = []
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor)

        async def read() -> None:
            async for event in feed.events():
                await event.ack(outcome)
                got.append(event)
                if len(got) == expect:
                    return

        await asyncio.wait_for(read(), WAIT)
    return got


async def nothing_more(bundle: Bundle, cursor: Path, seconds: float = 1.5) -> bool:
    """True if the feed holds no event after the cursor for `seconds`."""
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor)

        async def first() -> FeedEvent:
            async for event in feed.events():
                return event
            raise AssertionError("feed ended")

        try:
            await asyncio.wait_for(first(), seconds)
        except TimeoutError:
            return True
    return False


async def reassigned(bundle: Bundle, token_key: str, token: bytes, days: list[float]) -> list[int]:
    """CheckReassigned at the platform's own registry."""
    async with secure_channel(bundle) as channel:
        stub = platforms_pb2_grpc.PlatformsStub(channel)
        response = await stub.CheckReassigned(
            platforms_pb2.CheckReassignedRequest(
                queries=[
                    platforms_pb2.ReassignedQuery(
                        token=common_pb2.Token(key_id=token_key, value=token),
                        since=ts(days_ago(d)),
                    )
                    for d in days
                ]
            ),
            timeout=10,
        )
    return list(response.answers)


async def caught_up(three: Three, member: str, seconds: float = WAIT) -> int:
    """Wait until `member` has applied everything the hub logged; its cursor."""
    hub_log = three.registry("hub").hub_log
    replica = three.registry(member).replica
    assert hub_log is not None and replica is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        _, head, _ = await hub_log.positions()
        at = (await replica.cursor()).applied_seq
        if at >= head:
            return at
        if loop.time() > deadline:
            raise AssertionError(f"{member} at {at}, hub head {head}")
        await asyncio.sleep(0.1)


def positions(three: Three, at: str) -> dict[str, dict[str, object]]:
    """`numbind federation show --json` at registry `at`: member id -> replication."""
    url = three.database_urls.get(at)
    extra = ["--database-url", url] if url else []
    report = json.loads(fed("show", three.dir(at), "--json", *extra))
    return {m["id"]: m["replication"] for m in report["members"]}


async def acked(three: Three, member: str, seq: int, seconds: float = WAIT) -> None:
    """Wait until the hub has `member`'s ack of `seq`."""
    hub_log = three.registry("hub").hub_log
    assert hub_log is not None
    for _ in range(int(seconds * 10)):
        acks, _, _ = await hub_log.positions()
        if acks.get(member, 0) >= seq:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"hub has no ack of {seq} from {member}")
