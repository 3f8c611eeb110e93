"""/metrics: acks by platform and outcome (numbind_order_outcomes_total), per process."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import httpx
from numbind.registry.testing import running_registry
from numbind.sdk import Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

from tests.e2e._story import carrier, days_ago, publish, tokenize
from tests.e2e.test_metrics import PHONE, _free_port


async def _feed_ids(channel: grpc.aio.Channel, n: int) -> list[str]:
    seen: list[str] = []

    async def read() -> None:
        async for event in EventFeed(channel, after_seq=0, heartbeat_seconds=5).events():
            seen.append(event.order_id)
            if len(seen) == n:
                return

    await asyncio.wait_for(read(), 10)
    return seen


def _ack(
    order_id: str, outcome: platforms_pb2.AckOutcome.ValueType, reason: str = "", rid: str = ""
) -> platforms_pb2.AckEventsRequest:
    ack = platforms_pb2.Ack(order_id=order_id, outcome=outcome, reason=reason)
    return platforms_pb2.AckEventsRequest(request_id=rid or uuid.uuid4().hex, acks=[ack])


async def test_ack_outcomes_are_counted_by_platform_once(tmp_path: Path) -> None:
    """A platform refusing revocations (REJECTED) showed in `admin stats`, not here. A
    retried request (its idempotency record answers) and a duplicate ack record nothing."""
    port = _free_port()
    async with running_registry(tmp_path / "data", metrics_listen=f"127.0.0.1:{port}") as reg:
        cm, p1, p2 = reg.add_carrier("cm"), reg.add_platform("p1"), reg.add_platform("p2")
        for p in (p1, p2):
            await publish(p, await tokenize(p, PHONE), [(b"acct", days_ago(200))])
        async with carrier(cm) as c:
            await c.report(
                [
                    LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(100)),
                    LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10)),
                ]
            )
        async with secure_channel(p1) as channel:
            notice, order = await _feed_ids(channel, 2)
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            await stub.AckEvents(_ack(notice, platforms_pb2.ACK_OUTCOME_NOTED))
            refuse = _ack(order, platforms_pb2.ACK_OUTCOME_REJECTED, "court order", rid="r1")
            assert (await stub.AckEvents(refuse)).recorded == 1
            assert (await stub.AckEvents(refuse)).recorded == 1  # the same answer, replayed
            again = _ack(order, platforms_pb2.ACK_OUTCOME_REJECTED, "court order")
            assert (await stub.AckEvents(again)).duplicate == 1
        async with secure_channel(p2) as channel:
            _, order = await _feed_ids(channel, 2)
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            await stub.AckEvents(_ack(order, platforms_pb2.ACK_OUTCOME_UNBOUND))
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("numbind_order_outcomes_total{")
    }
    assert samples == {
        'numbind_order_outcomes_total{outcome="noted",platform="p1"}': 1,
        'numbind_order_outcomes_total{outcome="rejected",platform="p1"}': 1,
        'numbind_order_outcomes_total{outcome="unbound",platform="p2"}': 1,
    }, text
