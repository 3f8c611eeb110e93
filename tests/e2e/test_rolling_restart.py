"""Rolling restart behind HAProxy: each of three registries is stopped (SIGTERM, graceful
drain) and started again in turn while two platforms publish and stream and a carrier
reports. Nothing but retried UNAVAILABLE may reach an SDK user, and the fault suite's
checker must count every owed revocation delivered: 0 lost, 0 unexpected.

Owed: one REVOKE per (platform, account) published. The pipeline publishes a batch of
numbers at both platforms, then the carrier reports those numbers REISSUED (tenure after
every binding), so each binding is revoked exactly once; the platforms' consumers ack
each event UNBOUND and record what they received, duplicates included.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from numbind.sdk import AckOutcome, CarrierClient, Lifecycle, LifecycleReport, PlatformClient, Row

from tests.e2e._cluster import NAMES, cluster
from tests.e2e._story import days_ago
from tests.faults.checker import check, summary_lines

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BATCH = 10
PLATFORMS = ("p1", "p2")


def phone(i: int) -> str:
    return f"+86137{i:08d}"


async def test_rolling_restart_loses_nothing(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        clients = {p: PlatformClient(c.bundle("platform", p)) for p in PLATFORMS}
        carrier = CarrierClient(c.bundle("carrier", "cm"))
        owed: set[tuple[str, bytes]] = set()
        received: list[tuple[str, bytes]] = []
        restarting = asyncio.Event()
        restarting.set()
        batches = 0

        async def pipeline() -> None:
            nonlocal batches
            n = 0
            # Keep going while restarts run, then a few batches on the settled cluster.
            tail = 3
            while restarting.is_set() or tail > 0:
                if not restarting.is_set():
                    tail -= 1
                numbers = list(range(n, n + BATCH))
                n += BATCH
                for p, client in clients.items():
                    rows = [Row(phone(i), f"acct-{i}", days_ago(300)) for i in numbers]
                    await client.publish(rows)
                    owed.update((p, client.account_ref(f"acct-{i}")) for i in numbers)
                await carrier.report(
                    [LifecycleReport(phone(i), Lifecycle.REISSUED, days_ago(1)) for i in numbers]
                )
                batches += 1
                await asyncio.sleep(0.2)

        async def consume(p: str) -> None:
            cursor = tmp_path / f"{p}.cursor"
            async for event in clients[p].events(cursor_file=cursor, heartbeat_seconds=2):
                received.append((p, event.account_ref))
                await event.ack(AckOutcome.UNBOUND)

        consumers = [asyncio.ensure_future(consume(p)) for p in PLATFORMS]
        driver = asyncio.ensure_future(pipeline())
        drains: dict[str, float] = {}
        started = time.monotonic()
        try:
            await asyncio.sleep(3)
            for name in NAMES:
                drains[name] = await asyncio.to_thread(c.stop, name)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(c.start, name)
                await asyncio.to_thread(c.wait_all_up)
                await asyncio.sleep(1)
                assert not driver.done() or driver.exception() is None
            restarting.clear()
            await asyncio.wait_for(driver, 120)  # raises whatever reached the SDK user
            deadline = time.monotonic() + 60
            while not owed <= set(received) and time.monotonic() < deadline:
                for task in consumers:
                    if task.done():
                        task.result()  # an error that reached the feed's user
                await asyncio.sleep(0.2)
        finally:
            driver.cancel()
            for task in consumers:
                task.cancel()
            for client in clients.values():
                await client.close()
            await carrier.close()
        row = check("rolling restart of 3 registries behind HAProxy", owed, received)
        print(
            f"\nrolling restart: {batches} batches in {time.monotonic() - started:.0f} s; "
            f"drains {', '.join(f'{n} {s:.1f} s' for n, s in drains.items())}"
        )
        print("\n".join(summary_lines([row], [])))
        assert row.expected == len(PLATFORMS) * BATCH * batches
