"""Several `numbind serve` processes on one PostgreSQL store, and what bench/scale.py
measures through them: holder queries, cross-process event latency, quota accuracy."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

from bench._harness import ServerProcess, free_port, numbind, serve, wait_listening
from bench._reissue_plan import (
    ISSUED,
    REISSUED,
    Plan,
    lifecycle_requests,
    load,
    query_latencies,
    signed_queries,
)

# The stream's heartbeat in the latency run. A process learns of events another process
# committed through PostgreSQL's LISTEN/NOTIFY (services.changes), with a 1 s poll as the
# bound; a latency near this heartbeat would mean neither woke the stream.
HEARTBEAT = 2


@contextmanager
def data_dir(url: str) -> Iterator[Path]:
    """A data dir (keys, CA) whose store is the PostgreSQL database at `url`."""
    with tempfile.TemporaryDirectory(prefix="numbind-scale-") as tmp:
        data = Path(tmp) / "data"
        numbind("admin", "init", "--data-dir", str(data), env={"NUMBIND_DATABASE_URL": url})
        yield data


def rehome(bundle: Bundle, address: str) -> Bundle:
    """A copy of `bundle` (beside it) that calls the registry process at `address`: what a
    TCP load balancer does per connection, without one in the path. `bundle` itself when it
    already calls `address` (one process: nothing to copy)."""
    if bundle.registry == address:
        return bundle
    out = bundle.directory.with_name(f"{bundle.directory.name}@{address.rsplit(':', 1)[1]}")
    return Bundle.write(
        out,
        registry=address,
        role=bundle.role,
        principal_id=bundle.principal_id,
        ca_pem=bundle.ca_pem,
        cert_pem=bundle.cert_pem,
        key_pem=bundle.key_pem,
        attestation_seed=bundle.attestation_seed,
    )


@contextmanager
def servers(url: str, data: Path, count: int, env: dict[str, str]) -> Iterator[list[ServerProcess]]:
    """`count` serve processes on one data dir and database, each on its own port."""
    full = {"NUMBIND_DATABASE_URL": url, "NUMBIND_LOG_LEVEL": "WARNING", **env}
    started: list[ServerProcess] = []
    logs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for i in range(count):
            listen = f"127.0.0.1:{free_port()}"
            log = data.parent / f"serve-{listen.rsplit(':', 1)[1]}-{i}.log"
            proc = serve(data, listen, log, full, name=str(i) if count > 1 else "")
            started.append(ServerProcess(data, listen, proc, {"NUMBIND_DATABASE_URL": url}))
            logs[listen] = (proc, log)
        wait_listening(logs, 60)
        yield started
    finally:
        for server in started:
            server.proc.terminate()
        for server in started:
            server.proc.wait(timeout=30)


async def holder_queries(
    carrier: Bundle, platforms: list[Bundle], key_id: str, numbers: int, queries: int
) -> list[float]:
    """`numbers` numbers with 10 bindings each (published, ISSUED long ago), then `queries`
    sequential QueryBindings, one attestation each: seconds per call."""
    plan = Plan.make(numbers * 10, 0, numbers, seed=14)
    await load(plan, platforms, key_id, 4)
    async with secure_channel(carrier) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        for request in lifecycle_requests(plan.tokens, key_id, ISSUED, plan.issued_us):
            await stub.ReportLifecycle(request, timeout=300)
        holders = holders_pb2_grpc.HoldersStub(channel)
        await query_latencies(holders, signed_queries(carrier, plan, key_id, 0, 5))  # warm
        return await query_latencies(holders, signed_queries(carrier, plan, key_id, 0, queries))


async def event_latency(
    carrier: Bundle, platform: Bundle, report_to: str, stream_from: str, key_id: str, events: int
) -> list[float]:
    """A carrier reports one REISSUED number at a time to process A (`report_to`); the
    platform, whose binding it revokes, streams from process B (`stream_from`): seconds
    from the report call to the event on the stream, per event."""
    plan = Plan.make(events * 10, 0, events, seed=41)
    tokens = plan.tokens[:events]
    arrivals: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    async with (
        secure_channel(carrier, target=report_to) as carrier_channel,
        secure_channel(platform, target=stream_from) as platform_channel,
    ):
        platforms = platforms_pb2_grpc.PlatformsStub(platform_channel)
        request = platforms_pb2.PublishBindingsRequest(request_id=uuid.uuid4().hex)
        for i, token in enumerate(tokens):
            b = request.bindings.add()
            b.token.key_id = key_id
            b.token.value = token
            b.account_ref = b"lat-" + i.to_bytes(4, "big")
            b.bound_at.FromMicroseconds(plan.issued_us + 1)
            b.kind = common_pb2.BINDING_KIND_LOGIN
        await platforms.PublishBindings(request, timeout=60)
        carriers = carriers_pb2_grpc.CarriersStub(carrier_channel)
        for r in lifecycle_requests(tokens, key_id, ISSUED, plan.issued_us):
            await carriers.ReportLifecycle(r, timeout=60)
        head = 0
        ready = asyncio.Event()

        async def follow() -> None:
            call = platforms.StreamEvents(
                platforms_pb2.StreamEventsRequest(after_seq=head, heartbeat_seconds=HEARTBEAT)
            )
            async for item in call:
                if item.HasField("heartbeat"):
                    ready.set()
                for event in item.events.events:
                    await arrivals.put((event.order_id, time.monotonic()))

        follower = asyncio.ensure_future(follow())
        try:
            await asyncio.wait_for(ready.wait(), 30)
            # Drain anything earlier runs left in this platform's feed.
            await asyncio.sleep(0.5)
            while not arrivals.empty():
                arrivals.get_nowait()
            seen: set[str] = set()
            out = []
            for token in tokens:
                (r,) = lifecycle_requests([token], key_id, REISSUED, time.time_ns() // 1000)
                start = time.monotonic()
                await carriers.ReportLifecycle(r, timeout=60)
                while True:
                    order_id, at = await asyncio.wait_for(arrivals.get(), 60)
                    if order_id not in seen:
                        seen.add(order_id)
                        break
                out.append(at - start)
            return out
        finally:
            follower.cancel()


async def quota_granted(bundle: Bundle, targets: list[str], seconds: float) -> int:
    """Elements granted to one principal asking every process in `targets` as fast as it
    answers (batches of 10, one call in flight per process) for `seconds`."""
    blinded = [voprf.blind(f"+86139{i:08d}".encode(), voprf.MODE_VOPRF)[1] for i in range(10)]
    request = tokens_pb2.EvaluateRequest(blinded_elements=blinded)
    granted = 0
    channels = [secure_channel(bundle, target=t) for t in targets]
    try:
        # Warm up (the first call starts each process's crypto workers), counted as granted:
        # the window starts with the bucket 3 elements short of full.
        one = tokens_pb2.EvaluateRequest(blinded_elements=blinded[:1])
        for channel in channels:
            await tokens_pb2_grpc.TokensStub(channel).Evaluate(one, timeout=60)
            granted += 1
        stop = time.monotonic() + seconds

        async def ask(channel: Any) -> None:
            nonlocal granted
            stub = tokens_pb2_grpc.TokensStub(channel)
            while time.monotonic() < stop:
                try:
                    await stub.Evaluate(request, timeout=30)
                    granted += len(blinded)
                except grpc.aio.AioRpcError as exc:  # refused: ask again shortly
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(ask(c) for c in channels))
    finally:
        for channel in channels:
            await channel.close()
    return granted
