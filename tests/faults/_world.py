"""The world every fault case starts from: numbers issued by one carrier, bound at several
platforms, and the reissue batches that owe each platform one revocation per binding.

What a platform is owed is keyed by (platform id, account_ref): one binding, one order.
An order id is the registry's own, so a second order for the same binding would show as a
redelivery of that key, and the registry-kill cases check there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    AccountRefs,
    CarrierClient,
    EventFeed,
    FeedEvent,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    RetryPolicy,
    Row,
    secure_channel,
)
from numbind.v1 import carriers_pb2, common_pb2

from tests.e2e._story import days_ago

ISSUED_DAYS_AGO = 500
BOUND_DAYS_AGO = 100
REISSUED_DAYS_AGO = 1


@dataclass
class World:
    carrier: Bundle
    platforms: dict[str, Bundle]
    phones: list[str]
    accounts_per_platform: int
    owed: set[tuple[str, bytes]] = field(default_factory=set)


def phones(n: int, prefix: str = "+86138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(n)]


def make_world(
    settings: Settings,
    root: Path,
    address: str,
    numbers: int,
    *,
    platforms: int = 3,
    accounts_per_platform: int = 2,
) -> World:
    """Register a carrier and `platforms` platforms offline (before any server runs)."""

    def add(role: str, name: str, category: str = "") -> Bundle:
        return operator.add_principal(
            settings,
            role,
            name,
            root / f"{role}-{name}",
            display_name=name,
            category=category,
            registry_address=address,
        )

    carrier = add("carrier", "cm")
    plats = {f"p{i}": add("platform", f"p{i}", "other") for i in range(platforms)}
    return World(carrier, plats, phones(numbers), accounts_per_platform)


def world_on(
    reg: RunningRegistry, numbers: int, *, platforms: int = 3, accounts_per_platform: int = 2
) -> World:
    """The same principals on a registry running in this process."""
    plats = {f"p{i}": reg.add_platform(f"p{i}") for i in range(platforms)}
    return World(reg.add_carrier("cm"), plats, phones(numbers), accounts_per_platform)


async def reissue_all(
    world: World, batch: int = 100, progress: Callable[[int], None] | None = None
) -> None:
    await reissue(world, world.phones, batch, progress)


async def reissue(
    world: World,
    numbers: list[str],
    batch: int = 100,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Reissue `numbers` through the SDK (fresh request ids, retried on UNAVAILABLE)."""
    async with CarrierClient(world.carrier, retry=RetryPolicy(attempts=30, cap=2.0)) as c:
        await c.report(
            [LifecycleReport(p, Lifecycle.REISSUED, days_ago(REISSUED_DAYS_AGO)) for p in numbers],
            batch_size=batch,
            progress=progress,
        )


def _account(platform: str, phone_index: int, j: int) -> str:
    return f"{platform}-{phone_index}-{j}"


async def seed(world: World) -> None:
    """Issue every number (long ago) and bind it at every platform (before the reissue)."""
    async with CarrierClient(world.carrier) as carrier:
        await carrier.report(
            [LifecycleReport(p, Lifecycle.ISSUED, days_ago(ISSUED_DAYS_AGO)) for p in world.phones]
        )
    for pid, bundle in world.platforms.items():
        rows = [
            Row(phone, _account(pid, i, j), days_ago(BOUND_DAYS_AGO))
            for i, phone in enumerate(world.phones)
            for j in range(world.accounts_per_platform)
        ]
        async with PlatformClient(bundle) as client:
            await client.publish(rows)
        refs = AccountRefs.from_bundle(bundle)
        world.owed.update((pid, refs(r.account_id)) for r in rows)


def _ts(days: float) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(days_ago(days))
    return t


async def reissue_requests(
    world: World, batch: int, prefix: str = "reissue"
) -> list[carriers_pb2.ReportLifecycleRequest]:
    """ReportLifecycle requests of `batch` REISSUED events each, with fixed request ids so a
    carrier's retry after a crash is the same request."""
    async with CarrierClient(world.carrier) as carrier:
        tokens = await carrier.tokenize(world.phones)
    events = [
        carriers_pb2.LifecycleEvent(
            token=common_pb2.Token(key_id=t.key_id, value=t.token),
            kind=carriers_pb2.LIFECYCLE_KIND_REISSUED,
            effective_at=_ts(REISSUED_DAYS_AGO),
        )
        for t in tokens
    ]
    return [
        carriers_pb2.ReportLifecycleRequest(
            request_id=f"{prefix}-{n}", events=events[i : i + batch]
        )
        for n, i in enumerate(range(0, len(events), batch))
    ]


async def read_feed(bundle: Bundle) -> list[FeedEvent]:
    """Everything in the platform's feed from the start, without acking (follow=False)."""
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, after_seq=0, heartbeat_seconds=1)
        return [event async for event in feed.events(follow=False)]


async def received_keys(world: World, bundles: dict[str, Bundle] | None = None) -> list[Hashable]:
    """(platform, account_ref) of every event in every platform's feed, duplicates kept."""
    keys: list[Hashable] = []
    for pid, bundle in (bundles or world.platforms).items():
        keys.extend((pid, e.account_ref) for e in await read_feed(bundle))
    return keys


Answer = tuple[int, int, int, int, str]


def as_tuple(resp: carriers_pb2.ReportLifecycleResponse) -> Answer:
    return (
        resp.applied,
        resp.superseded,
        resp.orders_created,
        resp.notices_created,
        resp.revocation_id,
    )
