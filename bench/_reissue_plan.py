"""bench/reissue.py's data set: the plan of numbers and bindings, the requests that load it
and report it, and the holder queries timed against it (also used by bench/scale.py,
bench/federation.py and bench/_live.py)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import EventCause, EventKind, OrderState
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    carriers_pb2,
    common_pb2,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

from bench._harness import valid_token

PLATFORMS = 20
PER_TOKEN = 10  # bindings per number, each at a different platform
ACK_BATCH = 500
DAY_US = 86_400 * 1_000_000
LIFECYCLE_BATCH = 10_000  # ReportLifecycle's maximum
PUBLISH_BATCH = 10_000  # PublishBindings' maximum
UNBOUND = platforms_pb2.AckOutcome.Value("ACK_OUTCOME_UNBOUND")
ISSUED = carriers_pb2.LifecycleKind.Value("LIFECYCLE_KIND_ISSUED")
REISSUED = carriers_pb2.LifecycleKind.Value("LIFECYCLE_KIND_REISSUED")
REVOKE, CAUSE, PENDING = int(EventKind.REVOKE), int(EventCause.REISSUED), int(OrderState.PENDING)


def floor_room(bindings: int, reissued: int) -> bool:
    """Whether `bindings` (PER_TOKEN a number) leave as many numbers alone as `reissued`
    (Plan.untouched)."""
    return bindings >= 2 * PER_TOKEN * reissued


# -- the data set -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Numbers 0..reissued-1 are reissued; numbers reissued..reissued+queried-1 are queried
    by their holder; every number has PER_TOKEN bindings at PER_TOKEN distinct platforms."""

    tokens: list[bytes]
    reissued: int
    queried: int
    now_us: int

    @staticmethod
    def make(bindings: int, reissued: int, queried: int, seed: int = 8) -> Plan:
        numbers = max(bindings // PER_TOKEN, reissued + queried)
        rng = random.Random(seed)
        tokens = [valid_token(rng.randbytes(16)) for _ in range(numbers)]
        return Plan(tokens, reissued, queried, now_us())

    @property
    def bindings(self) -> int:
        return len(self.tokens) * PER_TOKEN

    @property
    def untouched(self) -> list[bytes]:
        """As many numbers as the batch reissues, from those it leaves alone (the first
        `queried` of them are only read): where the floors run after the window, on the
        same bindings per number at the same store size."""
        if not floor_room(self.bindings, self.reissued):
            raise ValueError(f"{self.bindings} bindings leave fewer than {self.reissued} untouched")
        return self.tokens[self.reissued : 2 * self.reissued]

    @staticmethod
    def platforms_of(t: int) -> list[int]:
        first = (t * 7) % PLATFORMS
        return [(first + k) % PLATFORMS for k in range(PER_TOKEN)]

    def numbers_at(self, platform: int) -> list[int]:
        return [
            t
            for t in range(len(self.tokens))
            if (platform - t * 7) % PLATFORMS < PER_TOKEN  # platform in platforms_of(t)
        ]

    def expected_orders(self) -> list[int]:
        out = [0] * PLATFORMS
        for t in range(self.reissued):
            for p in self.platforms_of(t):
                out[p] += 1
        return out

    def bound_us(self, t: int, platform: int) -> int:
        """200 .. 3,000 days ago: long before the reissue (1 day ago)."""
        return self.now_us - (200 + (t * 31 + platform * 17) % 2800) * DAY_US

    @property
    def issued_us(self) -> int:
        return self.now_us - 3650 * DAY_US

    @property
    def reissued_us(self) -> int:
        return self.now_us - DAY_US


def now_us() -> int:
    return time.time_ns() // 1000


def publish_requests(
    plan: Plan, platform: int, key_id: str
) -> Iterator[platforms_pb2.PublishBindingsRequest]:
    numbers = plan.numbers_at(platform)
    for i in range(0, len(numbers), PUBLISH_BATCH):
        request = platforms_pb2.PublishBindingsRequest(request_id=uuid.uuid4().hex)
        for t in numbers[i : i + PUBLISH_BATCH]:
            b = request.bindings.add()
            b.token.key_id = key_id
            b.token.value = plan.tokens[t]
            b.account_ref = t.to_bytes(8, "big") + platform.to_bytes(8, "big")
            b.bound_at.FromMicroseconds(plan.bound_us(t, platform))
            b.kind = common_pb2.BINDING_KIND_LOGIN
        yield request


def lifecycle_requests(
    tokens: list[bytes], key_id: str, kind: int, effective_us: int
) -> list[carriers_pb2.ReportLifecycleRequest]:
    out = []
    for i in range(0, len(tokens), LIFECYCLE_BATCH):
        request = carriers_pb2.ReportLifecycleRequest(request_id=uuid.uuid4().hex)
        for token in tokens[i : i + LIFECYCLE_BATCH]:
            e = request.events.add()
            e.token.key_id = key_id
            e.token.value = token
            e.kind = kind  # type: ignore[assignment]
            e.effective_at.FromMicroseconds(effective_us)
        out.append(request)
    return out


async def active_key_id(bundle: Bundle) -> str:
    async with secure_channel(bundle) as channel:
        keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
    return str(keys.active_key_id)


async def load(plan: Plan, platforms: list[Bundle], key_id: str, in_flight: int) -> int:
    """Publish every platform's bindings, batches of 10,000, `in_flight` calls at once."""
    gate = asyncio.Semaphore(in_flight)
    channels = [secure_channel(b) for b in platforms]
    try:

        async def one(p: int) -> int:
            stub = platforms_pb2_grpc.PlatformsStub(channels[p])
            inserted = 0
            for request in publish_requests(plan, p, key_id):
                async with gate:
                    response = await stub.PublishBindings(request, timeout=300)
                inserted += response.inserted
            return inserted

        return sum(await asyncio.gather(*(one(p) for p in range(len(platforms)))))
    finally:
        for c in channels:
            await c.close()


# -- holder queries ---------------------------------------------------------------------------
def signed_queries(
    carrier: Bundle, plan: Plan, key_id: str, first: int, count: int
) -> list[holders_pb2.QueryBindingsRequest]:
    key = carrier.attestation_signing_key()
    out = []
    for i in range(count):
        t = first + i % plan.queried
        data, sig = attestation.issue(
            key,
            carrier_id=carrier.principal_id,
            token=plan.tokens[t],
            key_id=key_id,
            subject=f"bench-subscriber-{t}",
            tenure_start_us=plan.issued_us,
            purpose=attestation.Purpose.QUERY,
        )
        out.append(
            holders_pb2.QueryBindingsRequest(
                attestations=[holders_pb2.SignedAttestation(attestation=data, signature=sig)]
            )
        )
    return out


async def query_latencies(
    stub: holders_pb2_grpc.HoldersAsyncStub, requests: list[holders_pb2.QueryBindingsRequest]
) -> list[float]:
    out = []
    for request in requests:
        start = time.perf_counter()
        response = await stub.QueryBindings(request, timeout=60)
        out.append(time.perf_counter() - start)
        (number,) = response.numbers
        assert sum(p.active_count for p in number.platforms) == PER_TOKEN, number
    return out


async def round_trips(channel: grpc.aio.Channel, n: int) -> list[float]:
    """`n` sequential grpc.health Checks over `channel`: one gRPC+mTLS round trip with no
    authentication and no store behind it, the floor beside a holder query's latency."""
    stub = health_pb2_grpc.HealthStub(channel)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=60)
        out.append(time.perf_counter() - start)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
