"""bench/reissue.py's platform workers: each follows one platform's feed and acks every
event UNBOUND, in asyncio tasks or in spawned worker processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.v1 import (
    platforms_pb2,
    platforms_pb2_grpc,
)

from bench._reissue_plan import UNBOUND


# -- platform workers -------------------------------------------------------------------------
@dataclass
class WorkerResult:
    platform: str
    expected: int
    acked: int = 0
    duplicates: int = 0
    redelivered: int = 0
    ack_calls: int = 0
    first_event: float = 0.0  # time.monotonic(): CLOCK_MONOTONIC, comparable across processes
    last_event: float = 0.0
    last_ack: float = 0.0


@dataclass
class ProcResult:
    workers: list[WorkerResult] = field(default_factory=list)
    cpu_seconds: float = 0.0


async def _raw_events(
    stub: platforms_pb2_grpc.PlatformsAsyncStub, ready: asyncio.Event
) -> AsyncIterator[str]:
    call = stub.StreamEvents(platforms_pb2.StreamEventsRequest(after_seq=0, heartbeat_seconds=1))
    try:
        async for item in call:
            if item.HasField("heartbeat"):
                ready.set()
                continue
            for event in item.events.events:
                yield event.order_id
    finally:
        call.cancel()


async def _sdk_events(channel: Any, ready: asyncio.Event) -> AsyncIterator[str]:
    feed = EventFeed(channel, after_seq=0, heartbeat_seconds=1)
    watch = asyncio.ensure_future(_first_heartbeat(feed, ready))
    try:
        async for event in feed.events():
            yield event.order_id
    finally:
        watch.cancel()


async def _first_heartbeat(feed: EventFeed, ready: asyncio.Event) -> None:
    # EventFeed consumes heartbeats itself and says nothing when its stream opens. The feed
    # is empty before the report, so 1.5 s with no reconnect means the stream is open and
    # idle (the server has sent its first 1 s heartbeat).
    await asyncio.sleep(1.5)
    if feed.reconnects == 0:
        ready.set()


async def consume(
    bundle: Bundle, expected: int, ready: asyncio.Event, consumer: str, ack_batch: int
) -> WorkerResult:
    """Follow one platform's feed; ack everything UNBOUND, batched, one AckEvents in flight."""
    result = WorkerResult(bundle.principal_id, expected)
    async with secure_channel(bundle) as channel:
        stub = platforms_pb2_grpc.PlatformsStub(channel)
        pending: list[str] = []
        wake = asyncio.Event()

        async def acker() -> None:
            while result.acked + result.duplicates < expected:
                await wake.wait()
                wake.clear()
                while pending:
                    batch = pending[:ack_batch]
                    del pending[:ack_batch]
                    response = await stub.AckEvents(
                        platforms_pb2.AckEventsRequest(
                            request_id=uuid.uuid4().hex,
                            acks=[platforms_pb2.Ack(order_id=o, outcome=UNBOUND) for o in batch],
                        ),
                        timeout=300,
                    )
                    result.acked += response.recorded
                    result.duplicates += response.duplicate
                    result.ack_calls += 1
                    result.last_ack = time.monotonic()

        acks = asyncio.ensure_future(acker())
        seen: set[str] = set()
        source = _raw_events(stub, ready) if consumer == "raw" else _sdk_events(channel, ready)
        try:
            async for order_id in source:
                now = time.monotonic()
                if not result.first_event:
                    result.first_event = now
                if order_id in seen:
                    result.redelivered += 1
                    continue
                seen.add(order_id)
                result.last_event = now
                pending.append(order_id)
                wake.set()
                if len(seen) == expected:
                    break
            await acks
        finally:
            acks.cancel()
            await source.aclose()  # type: ignore[attr-defined]
    return result


async def run_workers(
    specs: list[tuple[str, int]],
    consumer: str,
    ack_batch: int,
    on_ready: Any,
    limit_s: float,
) -> ProcResult:
    readies = [asyncio.Event() for _ in specs]
    tasks = [
        asyncio.ensure_future(consume(Bundle.load(d), n, r, consumer, ack_batch))
        for (d, n), r in zip(specs, readies, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    cpu0 = time.process_time()
    on_ready()
    workers = await asyncio.wait_for(asyncio.gather(*tasks), limit_s)
    return ProcResult(list(workers), time.process_time() - cpu0)


def worker_process(
    specs: list[tuple[str, int]], consumer: str, ack_batch: int, out: Any, timeout: float
) -> None:
    """Entry point of a worker process (spawned): report ready, then results."""
    try:
        result = asyncio.run(
            run_workers(specs, consumer, ack_batch, lambda: out.put(("ready", None)), timeout)
        )
        out.put(("done", result))
    except BaseException as exc:  # the parent must hear about any failure
        out.put(("error", repr(exc)))
        raise
