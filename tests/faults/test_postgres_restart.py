"""PostgreSQL itself restarted in the middle of a reissue batch.

The suite starts a PostgreSQL cluster of its own (initdb/pg_ctl in a temp dir on a free
loopback port) so it can stop and start it without touching the shared one. A registry
on it takes REISSUED batches from the carrier SDK; PostgreSQL is stopped (fast shutdown:
open connections are cut) while they go and started again a moment later. The registry
answers UNAVAILABLE while the database is away, the SDK retries each batch under its
request id, and in the end every platform's feed holds one order per binding.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from numbind.registry.testing import running_registry

from tests.faults import checker
from tests.faults._procs import PgCluster
from tests.faults._world import received_keys, reissue_all, seed, world_on

pytestmark = pytest.mark.slow

NUMBERS = 120
BATCH = 10  # twelve batches of 60 orders


async def test_postgres_restarted_mid_reissue(tmp_path: Path, pg_cluster: PgCluster) -> None:
    rng = random.Random("pg-restart")
    async with running_registry(tmp_path / "data", database_url=pg_cluster.url) as reg:
        world = world_on(reg, NUMBERS)
        await seed(world)

        restarts = sorted(rng.sample(range(2, NUMBERS // BATCH - 2), 2))
        done = asyncio.Event()
        batches = 0

        def on_batch(n: int) -> None:
            nonlocal batches
            batches += 1
            if batches in restarts:
                done.set()

        async def restart_when_told() -> int:
            count = 0
            for _ in restarts:
                await done.wait()
                done.clear()
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                await asyncio.to_thread(pg_cluster.stop, "fast")
                await asyncio.sleep(0.5)
                await asyncio.to_thread(pg_cluster.start)
                count += 1
            return count

        restarter = asyncio.create_task(restart_when_told())
        await reissue_all(world, batch=BATCH, progress=on_batch)
        assert await asyncio.wait_for(restarter, 60) == len(restarts)
        received = await received_keys(world)
    row = checker.check("PostgreSQL restarted mid-reissue", world.owed, received)
    assert row.redelivered == 0, "a binding got two revocation orders"
