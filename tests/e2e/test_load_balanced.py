"""Three registry processes on one PostgreSQL behind HAProxy behave as one registry.

- an event reported through one process reaches streams held on the others at once
  (LISTEN/NOTIFY): p50/p99 over 200 reported events are printed; only a generous bound
  is asserted (the machine is shared);
- a principal's token quota across the three grants at most its configured amount
  (plus one batch);
- a suspension made through one process ends the principal's streams on all three.

Which process holds which connection is read from HAProxy's stats socket, so each test
knows its calls really were spread over the processes. Needs haproxy (`make haproxy`) and
NUMBIND_TEST_DATABASE_URL; skipped without them, failed under CI=true.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from numbind.protocol import voprf
from numbind.registry.config import QuotaSettings
from numbind.sdk import Lifecycle, LifecycleReport, wire
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    carriers_pb2_grpc,
    common_pb2,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

from tests.e2e._cluster import Cluster, cluster
from tests.e2e._story import days_ago, ts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EVENTS = 200


def phone(i: int) -> str:
    return f"+86139{i:08d}"


async def until(cond: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def landed(c: Cluster, before: dict[str, int]) -> str:
    """The registry that took the one new connection since `before`."""
    for _ in range(200):
        now = await asyncio.to_thread(c.sessions)
        grown = [n for n in now if now[n] > before.get(n, 0)]
        if grown:
            return grown[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no new connection seen by haproxy: {before} -> {now}")


async def publish_numbers(c: Cluster, name: str, count: int) -> None:
    bundle = c.bundle("platform", name)
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel)
        tokens = await tok.tokenize([phone(i) for i in range(count)])
        tok.close()
        await platforms_pb2_grpc.PlatformsStub(channel).PublishBindings(
            platforms_pb2.PublishBindingsRequest(
                request_id=uuid.uuid4().hex,
                bindings=[
                    common_pb2.Binding(
                        token=common_pb2.Token(key_id=t.key_id, value=t.token),
                        account_ref=f"acct-{i}".encode(),
                        bound_at=ts(days_ago(300)),
                        kind=common_pb2.BINDING_KIND_LOGIN,
                    )
                    for i, t in enumerate(tokens)
                ],
            )
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_events_reach_streams_on_the_other_processes(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        platforms = ["p1", "p2", "p3"]
        for name in platforms:
            await publish_numbers(c, name, EVENTS)
        received: dict[str, dict[int, float]] = {p: {} for p in platforms}
        where: dict[str, str] = {}
        tasks = []
        channels = []
        for name in platforms:  # one stream per platform, each on its own connection
            before = await asyncio.to_thread(c.sessions)
            channel = secure_channel(c.bundle("platform", name))
            channels.append(channel)

            async def follow(channel: grpc.aio.Channel = channel, name: str = name) -> None:
                async for event in EventFeed(channel, after_seq=0, heartbeat_seconds=5).events():
                    received[name][int(event.account_ref.decode().split("-")[1])] = time.monotonic()

            tasks.append(asyncio.ensure_future(follow()))
            where[name] = await landed(c, before)
        assert sorted(where.values()) == ["r1", "r2", "r3"], where  # round robin spread them
        await asyncio.sleep(0.5)
        sent: dict[int, float] = {}
        async with secure_channel(c.bundle("carrier", "cm")) as channel:
            before = await asyncio.to_thread(c.sessions)
            tok = Tokenizer(channel)
            tokens = await tok.tokenize([phone(i) for i in range(EVENTS)])
            tok.close()
            reporter = await landed(c, before)
            stub = carriers_pb2_grpc.CarriersStub(channel)
            for i in range(EVENTS):
                report = LifecycleReport(phone(i), Lifecycle.DEACTIVATED, days_ago(1))
                request = wire.lifecycle_request(uuid.uuid4().hex, [report], [tokens[i]])
                sent[i] = time.monotonic()
                await stub.ReportLifecycle(request)
                await asyncio.sleep(0.02)
        await until(lambda: all(len(received[p]) == EVENTS for p in platforms), 60)
        for t in tasks:
            t.cancel()
        for ch in channels:
            await ch.close()
        across = [
            received[p][i] - sent[i]
            for p in platforms
            if where[p] != reporter
            for i in range(EVENTS)
        ]
        same = [
            received[p][i] - sent[i]
            for p in platforms
            if where[p] == reporter
            for i in range(EVENTS)
        ]
        print(
            f"\ncross-process event latency over {len(across)} deliveries ({EVENTS} reports "
            f"through {reporter}, streams on {sorted(set(where.values()) - {reporter})}): "
            f"p50 {statistics.median(across) * 1000:.1f} ms, "
            f"p99 {pct(across, 0.99) * 1000:.1f} ms, "
            f"max {max(across) * 1000:.1f} ms; same process p50 "
            f"{statistics.median(same) * 1000:.1f} ms, p99 {pct(same, 0.99) * 1000:.1f} ms "
            "(ReportLifecycle sent -> event read from the stream; shared, loaded machine)"
        )
        assert len(across) == 2 * EVENTS
        # Generous: heartbeats are 5 s, so only notification (or the 1 s poll) explains this.
        assert pct(across, 0.99) < 3.0


async def test_quota_holds_across_three_processes(tmp_path: Path) -> None:
    burst, batch, rate = 400, 20, 1.0
    quota = QuotaSettings(rate_per_second=rate, burst=burst, daily_cap=1_000_000)
    with cluster(tmp_path, quota=quota) as c:
        bundle = c.bundle("platform", "greedy")
        _, element = voprf.blind(phone(1).encode(), voprf.MODE_VOPRF)
        request = tokens_pb2.EvaluateRequest(blinded_elements=[element] * batch)
        warmed = {"r1": 0, "r2": 0, "r3": 0}  # warm-up elements granted, one per process
        granted = {"r1": 0, "r2": 0, "r3": 0}  # batch elements granted after the warm-up
        stubs = []
        for _ in range(3):
            before = await asyncio.to_thread(c.sessions)
            channel = secure_channel(bundle)
            await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
            stubs.append((channel, await landed(c, before)))
        assert sorted(w for _, w in stubs) == ["r1", "r2", "r3"]
        started = time.monotonic()
        # One element through each process first: a process's first Evaluate waits for its
        # worker pool to start (elements are validated there before quota is taken), and a
        # cold process would otherwise find the shared burst already spent by the others.
        one = tokens_pb2.EvaluateRequest(blinded_elements=[element])
        for channel, where in stubs:
            await tokens_pb2_grpc.TokensStub(channel).Evaluate(one)
            warmed[where] += 1

        async def spend(channel: grpc.aio.Channel, where: str) -> None:
            stub = tokens_pb2_grpc.TokensStub(channel)
            refused = 0
            while refused < 5:
                try:
                    await stub.Evaluate(request)
                    granted[where] += batch
                    refused = 0
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    refused += 1

        await asyncio.gather(*(spend(ch, w) for ch, w in stubs))
        elapsed = time.monotonic() - started
        for channel, _ in stubs:
            await channel.close()
        total = sum(warmed.values()) + sum(granted.values())
        allowed = burst + rate * elapsed
        print(
            f"\nquota across 3 processes: granted {total} of {allowed:.0f} allowed "
            f"(burst {burst} + {rate:g}/s x {elapsed:.1f} s) = {total / allowed:.3f}; "
            f"per process, after one warm-up element each: {granted}"
        )
        # Issue 14: across the three processes, at most the configured amount (+1 batch).
        assert total <= allowed + batch
        # ...and the bound was reached through all three: each process granted at least one
        # batch from the shared bucket beyond its warm-up element (with a bucket per process
        # each would grant its own burst, and the bound above would fail).
        assert all(v >= batch for v in granted.values()), granted


async def test_a_suspension_through_one_process_ends_streams_on_all_three(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        bundle = c.bundle("platform", "p1")
        ended: dict[str, tuple[float, grpc.StatusCode | None]] = {}
        tasks, channels = [], []
        where: list[str] = []
        for _ in range(3):
            before = await asyncio.to_thread(c.sessions)
            channel = secure_channel(bundle)
            channels.append(channel)
            stub = platforms_pb2_grpc.PlatformsStub(channel)

            async def hold(
                stub: platforms_pb2_grpc.PlatformsAsyncStub = stub, i: int = len(where)
            ) -> None:
                call = stub.StreamEvents(
                    platforms_pb2.StreamEventsRequest(after_seq=0, heartbeat_seconds=30)
                )
                code: grpc.StatusCode | None = None
                try:
                    async for _ in call:
                        pass
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                ended[f"stream{i}"] = (time.monotonic(), code)

            tasks.append(asyncio.ensure_future(hold()))
            where.append(await landed(c, before))
        assert sorted(where) == ["r1", "r2", "r3"]
        await asyncio.sleep(1.0)
        async with secure_channel(c.admin_bundle()) as admin:
            t0 = time.monotonic()
            await admin_pb2_grpc.AdminStub(admin).SetPrincipalSuspended(
                admin_pb2.SetPrincipalSuspendedRequest(
                    request_id=uuid.uuid4().hex,
                    role=admin_pb2.PRINCIPAL_ROLE_PLATFORM,
                    principal_id="p1",
                    suspended=True,
                )
            )
        try:
            await until(lambda: len(ended) == 3, 10)
        finally:
            for t in tasks:
                t.cancel()
            for ch in channels:
                await ch.close()
        delays = sorted(at - t0 for at, _ in ended.values())
        print(f"\nsuspension ended streams on {where} after {[f'{d:.2f} s' for d in delays]}")
        assert all(code is not None for _, code in ended.values()), ended
        assert delays[-1] < 5.0  # generous; the design bound is one second


def _rpc_count(text: str, method: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("numbind_rpc_total{") and f'method="{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_sdk_balances_over_several_addresses_without_a_load_balancer(
    tmp_path: Path,
) -> None:
    """A bundle listing all three registries: calls are spread round-robin, and keep
    working while one process is down. Each process's /metrics shows its share."""
    import httpx

    with cluster(tmp_path) as c:
        direct = ",".join(p.address for p in c.processes.values())
        bundle = c.bundle("platform", "p1", address=direct)
        assert bundle.registry == direct
        async with secure_channel(bundle) as channel:
            stub = tokens_pb2_grpc.TokensStub(channel)
            for _ in range(30):
                await stub.GetKeys(tokens_pb2.GetKeysRequest())
            async with httpx.AsyncClient() as http:
                shares = {
                    name: _rpc_count((await http.get(p.metrics_url)).text, "GetKeys")
                    for name, p in c.processes.items()
                }
            print(f"\nGetKeys per process over one round_robin channel: {shares}")
            assert sum(shares.values()) == 30
            assert all(n >= 5 for n in shares.values()), shares
            await asyncio.to_thread(c.stop, "r1")
            for _ in range(10):  # the channel skips the stopped process
                await stub.GetKeys(tokens_pb2.GetKeysRequest(), wait_for_ready=True)
