"""kill -9 of the registry (`numbind serve`) at random points of a reissue batch, on SQLite
and on PostgreSQL; then restart and the carrier's retry with the same request id.

A carrier sends REISSUED batches (numbers bound at three platforms) one after another; the
registry is killed at a seeded random moment while they go, twice. After each restart the
carrier retries the batch it had in flight under the same request id and goes on. In the
end every platform's feed holds one revocation per binding (none lost, none twice, none
extra), and every batch retried once more answers exactly as it first answered.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import grpc
import pytest
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.sdk import secure_channel
from numbind.v1 import carriers_pb2, carriers_pb2_grpc

from tests.faults import checker
from tests.faults._procs import Serve, free_port, serving
from tests.faults._world import (
    Answer,
    World,
    as_tuple,
    make_world,
    received_keys,
    reissue_requests,
    seed,
)

pytestmark = pytest.mark.slow

NUMBERS = 120
BATCH = 10  # twelve batches, 60 orders each (10 numbers x 3 platforms x 2 accounts)
KILLS = 2


async def _send_until_killed(
    world: World,
    requests: list[carriers_pb2.ReportLifecycleRequest],
    answers: dict[str, Answer],
    kill: Serve | None,
    rng: random.Random,
) -> None:
    """Send the unanswered batches in order. With `kill`, kill -9 the registry after a
    random number of answers plus a random pause, and return at the first failed call."""
    pending = [r for r in requests if r.request_id not in answers]
    # Early enough that a second kill still has batches to land in.
    kill_after = rng.randrange(0, max(1, len(pending) // 2)) if kill else -1
    async with secure_channel(world.carrier) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        killer: asyncio.Task[None] | None = None
        took = 0.05
        for n, request in enumerate(pending):
            if n == kill_after and kill is not None:
                # Somewhere inside this batch's work, or just after its answer.
                delay = rng.uniform(0.0, 1.2) * took
                killer = asyncio.create_task(_kill_soon(kill, delay))
            started = time.monotonic()
            try:
                resp = await stub.ReportLifecycle(request, timeout=60)
            except grpc.aio.AioRpcError as exc:
                assert killer is not None, f"{request.request_id}: {exc.code()} {exc.details()}"
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                await killer
                return
            took = time.monotonic() - started
            answers[request.request_id] = as_tuple(resp)
            print(f"{request.request_id} answered at {time.monotonic():.3f}")
        if kill is not None:  # the kill lands after the last batch
            await (killer or _kill_soon(kill, 0.0))


async def _kill_soon(serve: Serve, delay: float) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(serve.kill_9)
    print(f"killed at {time.monotonic():.3f}")


async def _retry_all(
    world: World, requests: list[carriers_pb2.ReportLifecycleRequest]
) -> dict[str, Answer]:
    async with secure_channel(world.carrier) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        return {r.request_id: as_tuple(await stub.ReportLifecycle(r, timeout=60)) for r in requests}


@pytest.mark.parametrize("seed_", [10])
@pytest.mark.parametrize("chunk", [0, 2])
async def test_kill_9_mid_reissue_then_retry(
    tmp_path: Path,
    database_url: str,
    seed_: int,
    chunk: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chunk` 2: the registry creates a report's orders 2 events per transaction (each
    batch in 5 chunks after its commit, services.local_apply), so a kill lands between
    chunks: the restarted registry resumes from its cursor."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    if chunk:
        monkeypatch.setenv("NUMBIND_APPLY_CHUNK_EVENTS", str(chunk))
        backend += f", {chunk}-event chunks"
    rng = random.Random(f"{backend}-{seed_}")
    listen = f"127.0.0.1:{free_port()}"
    settings = Settings(data_dir=tmp_path / "data", listen=listen, database_url=database_url)
    operator.init(settings, registry_address=listen)
    world = make_world(settings, tmp_path, listen, NUMBERS)
    log = tmp_path / "serve.log"

    answers: dict[str, Answer] = {}
    with serving(settings, log) as serve:
        await seed(world)
        requests = await reissue_requests(world, BATCH)
        for _ in range(KILLS):
            await _send_until_killed(world, requests, answers, serve, rng)
            assert serve.proc is not None and serve.proc.returncode is not None
            serve.start()
        await _send_until_killed(world, requests, answers, None, rng)
        assert len(answers) == len(requests)

        again = await _retry_all(world, requests)
        assert again == answers, "a retried batch answered differently from its first answer"
        assert sum(a[2] for a in answers.values()) == len(world.owed)

        received = await received_keys(world)
    row = checker.check(f"kill -9 registry mid-reissue ({backend})", world.owed, received)
    assert row.redelivered == 0, "a binding got two revocation orders"
