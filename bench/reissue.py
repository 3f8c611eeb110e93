"""A carrier's REISSUED batch at scale: revoked and acked at every platform, beside the floor.

Issue 6 item 8. With 20 platforms and --bindings (1,000,000) bindings in the store, a carrier
reports --reissued (10,000) numbers REISSUED in one ReportLifecycle call; every number carries
10 bindings at 10 platforms, made long before the new tenure, so the report creates
10 x --reissued revocation orders (100,000). Platform workers, their streams open and idle
before the clock starts, follow their feeds and ack as fast as they can (outcome UNBOUND, up
to --ack-batch 500 acks per AckEvents call, one call in flight per platform). Measured:

- report call latency (the one transaction that writes every order and feed entry);
- time from just before the report's call to the return of the last platform's last ack;
- events/s through the feed: orders / that time;
- holder query latency (Holders.QueryBindings, one attestation for a number with 10 live
  bindings), p50/p99 over --queries sequential calls after the batch, at that store size;
  with --query-during R, also while the batch is processed (R queries/s);
- CPU seconds the server and the clients used in the window (from /proc), to tell which
  side is the bottleneck.

Floor: raw feed inserts/s in the same store: a copy of the registry's SQLite file taken just
before the report (online backup API), one transaction of plain sqlite3 executemany INSERTs
of one `orders` row and one `feed_events` row per order (the transactional outbox's
irreducible write). Beside it, on a second copy, `registry.storage.orders.append` for the same
orders (the registry's own write of those rows plus the REVOKING marks), to tell the store
layer's cost from the rest of the path.

Workers default to asyncio tasks in this process: measured on 2 cores, the clients use
4-6 CPU-s of a 20-70 s window while the server is saturated, and --worker-procs 2 changed
nothing. Tokens are random valid group elements under the active key id (tokenising is
bench/tokens.py's subject); the numbers are established by ISSUED reports long before.
Loading time is printed, not measured against anything. --py-spy OUT samples the server
during the window (collapsed stacks; `.venv/bin/pip install py-spy`).

The whole run is made twice, with SQLite's PRAGMA synchronous=FULL (the registry's
setting: every commit on disk before it is acknowledged) and =NORMAL (the setting before
issue 10), and the key figures of both are printed side by side with the ratio
(--synchronous FULL or NORMAL runs one).

    .venv/bin/python -m bench.reissue [--quick] [--bindings N] [--reissued N]
        [--worker-procs N] [--consumer raw|sdk] [--ack-batch N] [--queries N]
        [--query-during RATE] [--py-spy OUT] [--synchronous both|FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import BindingState, EventCause, EventKind, OrderState
from numbind.sdk.channel import secure_channel
from numbind.sdk.feed import EventFeed
from numbind.v1 import (
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
)

from bench._harness import add_all, registry_process, row, valid_token

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
        return Plan(tokens, reissued, queried, _now_us())

    @property
    def bindings(self) -> int:
        return len(self.tokens) * PER_TOKEN

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


def _now_us() -> int:
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the floor --------------------------------------------------------------------------------
def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL database (the online backup API)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def raw_floor(db: Path, tokens: list[bytes]) -> tuple[int, float]:
    """One transaction of plain executemany INSERTs: an orders row and a feed row per order."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        targets = _live_bindings(conn, tokens)
        (next_pk,) = conn.execute("SELECT COALESCE(MAX(pk), 0) + 1 FROM orders").fetchone()
        carrier_pk = conn.execute("SELECT pk FROM principals WHERE role = 'carrier'").fetchone()[0]
        now = _now_us()
        rid = str(uuid.uuid4())
        orders = [
            (
                next_pk + i,
                str(uuid.uuid4()),
                rid,
                p,
                b,
                t,
                REVOKE,
                CAUSE,
                PENDING,
                0,
                "",
                now,
                now,
                now + DAY_US,
            )
            for i, (b, p, t) in enumerate(targets)
        ]
        # Far above any feed_head: no clash with the registry's own sequences in the copy.
        feed = [(p, 10**12 + i, next_pk + i, t, now) for i, (_, p, t) in enumerate(targets)]
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO revocations (id, cause, carrier_pk, scope, created_us) "
            "VALUES (?, ?, ?, 0, ?)",
            (rid, CAUSE, carrier_pk, now),
        )
        conn.executemany(
            "INSERT INTO orders (pk, id, revocation_id, platform_pk, binding_pk, token, kind,"
            " cause, state, outcome, reason, tenure_start_us, created_us, deadline_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            orders,
        )
        conn.executemany(
            "INSERT INTO feed_events (platform_pk, seq, order_pk, token, created_us)"
            " VALUES (?, ?, ?, ?, ?)",
            feed,
        )
        conn.execute("COMMIT")
        return len(orders), time.perf_counter() - start
    finally:
        conn.close()


def _live_bindings(conn: sqlite3.Connection, tokens: list[bytes]) -> list[tuple[int, int, bytes]]:
    out: list[tuple[int, int, bytes]] = []
    for i in range(0, len(tokens), 500):
        chunk = tokens[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        out += conn.execute(
            f"SELECT pk, platform_pk, token FROM bindings WHERE token IN ({marks}) AND state = ?",
            (*chunk, int(BindingState.ACTIVE)),
        ).fetchall()
    return out


@dataclass(frozen=True)
class AppendTimes:
    orders: int
    lookup_s: float  # bindings.live_for_tokens for the reissued tokens
    append_s: float  # orders.new_revocation + orders.append
    commit_s: float


def registry_append(db: Path, tokens: list[bytes]) -> AppendTimes:
    """The registry's storage calls for the same orders on a copy, in one transaction as in
    ReportLifecycle (without its number-state and audit-log writes)."""
    from numbind.registry.storage import orders
    from numbind.registry.storage.bindings import live_for_tokens
    from numbind.registry.storage.db import Database

    with sqlite3.connect(db) as conn:
        carrier_pk = conn.execute("SELECT pk FROM principals WHERE role = 'carrier'").fetchone()[0]
    conn.close()
    database = Database(f"sqlite:///{db}")
    try:

        def act(session: Any) -> tuple[int, float, float]:
            t0 = time.perf_counter()
            live = live_for_tokens(session, tokens)
            new = [
                orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, _now_us())
                for bs in live.values()
                for b in bs
            ]
            t1 = time.perf_counter()
            rid = orders.new_revocation(session, EventCause.REISSUED, carrier_pk)
            orders.append(session, rid, new, 86_400)
            return len(new), t1 - t0, time.perf_counter() - t1

        start = time.perf_counter()
        n, lookup, append = database.transact(act)
        return AppendTimes(n, lookup, append, time.perf_counter() - start - lookup - append)
    finally:
        database.close()


# -- the run ----------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_py_spy(pid: int, out: str | None) -> subprocess.Popen[bytes] | None:
    """Sample the server from here to stop_py_spy (collapsed stacks, for `--py-spy OUT`)."""
    if not out:
        return None
    exe = str(Path(sys.executable).parent / "py-spy")
    options = ["-r", "100", "--nonblocking", "--threads", "--format", "raw", "-o", out]
    spy = subprocess.Popen(
        [exe, "record", "-p", str(pid), *options],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the clock starts
    return spy


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


@dataclass
class Outcome:
    orders: int
    report_s: float
    total_s: float
    first_event_s: float
    last_event_s: float
    server_cpu_s: float
    client_cpu_s: float
    workers: list[WorkerResult]
    queries: list[float]
    during: list[float]
    revocation_done: bool


async def reissue(
    server_pid: int,
    carrier: Bundle,
    platforms: list[Bundle],
    plan: Plan,
    key_id: str,
    args: argparse.Namespace,
) -> Outcome:
    expected = plan.expected_orders()
    specs = [(str(b.directory), expected[i]) for i, b in enumerate(platforms)]
    requests = lifecycle_requests(plan.tokens[: plan.reissued], key_id, REISSUED, plan.reissued_us)
    during_requests = (
        signed_queries(carrier, plan, key_id, plan.reissued, 2_000) if args.query_during else []
    )
    loop = asyncio.get_running_loop()
    procs: list[Any] = []
    out: Any = None
    worker_tasks: list[asyncio.Future[ProcResult]] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        if args.worker_procs:
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            for k in range(args.worker_procs):
                proc = ctx.Process(
                    target=worker_process,
                    args=(specs[k :: args.worker_procs], args.consumer, args.ack_batch, out, 600.0),
                    daemon=True,
                )
                proc.start()
                procs.append(proc)
            for _ in procs:
                kind, payload = await loop.run_in_executor(None, out.get, True, 60)
                if kind != "ready":
                    raise RuntimeError(f"worker process failed: {payload}")
        else:
            ready = asyncio.Event()
            left = [len(specs)]

            def on_ready() -> None:
                left[0] -= 1
                if not left[0]:
                    ready.set()

            worker_tasks = [
                asyncio.ensure_future(
                    run_workers([s], args.consumer, args.ack_batch, on_ready, 600.0)
                )
                for s in specs
            ]
            await asyncio.wait_for(ready.wait(), 60)
        async with secure_channel(carrier) as channel:
            stub = carriers_pb2_grpc.CarriersStub(channel)
            holders = holders_pb2_grpc.HoldersStub(channel)
            await query_latencies(holders, signed_queries(carrier, plan, key_id, plan.reissued, 5))
            during: list[float] = []
            stop = asyncio.Event()

            async def query_during() -> None:
                for request in during_requests:
                    if stop.is_set():
                        return
                    during.extend(await query_latencies(holders, [request]))
                    await asyncio.sleep(1 / args.query_during)

            background = asyncio.ensure_future(query_during())
            spy = start_py_spy(server_pid, args.py_spy)
            server_cpu0 = proc_cpu_seconds(server_pid)
            client_cpu0 = time.process_time()
            t0 = time.monotonic()
            orders = 0
            revocation_ids = []
            for request in requests:
                response = await stub.ReportLifecycle(request, timeout=600)
                orders += response.orders_created
                revocation_ids.append(response.revocation_id)
            report_s = time.monotonic() - t0
            if procs:
                results: list[ProcResult] = []
                for _ in procs:
                    kind, payload = await loop.run_in_executor(None, out.get, True, 600)
                    if kind != "done":
                        raise RuntimeError(f"worker process failed: {payload}")
                    results.append(payload)
            else:
                results = list(await asyncio.gather(*worker_tasks))
            server_cpu = proc_cpu_seconds(server_pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
            stop_py_spy(spy)
            spy = None
            stop.set()
            await background
            workers = [w for r in results for w in r.workers]
            if procs:
                client_cpu += sum(r.cpu_seconds for r in results)
            t_end = max(w.last_ack for w in workers)
            done = True
            for rid in revocation_ids:
                progress = await holders.GetRevocation(
                    holders_pb2.GetRevocationRequest(revocation_id=rid)
                )
                done &= all(
                    p.state == holders_pb2.OrderState.Value("ORDER_STATE_DONE")
                    for p in progress.platforms
                )
            queries = await query_latencies(
                holders, signed_queries(carrier, plan, key_id, plan.reissued, args.queries)
            )
    finally:
        stop_py_spy(spy)
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for task in worker_tasks:
            task.cancel()
    return Outcome(
        orders=orders,
        report_s=report_s,
        total_s=t_end - t0,
        first_event_s=min(w.first_event for w in workers) - t0,
        last_event_s=max(w.last_event for w in workers) - t0,
        server_cpu_s=server_cpu,
        client_cpu_s=client_cpu,
        workers=workers,
        queries=queries,
        during=during,
        revocation_done=done,
    )


async def setup(
    server: Any, plan: Plan, args: argparse.Namespace
) -> tuple[Bundle, list[Bundle], str, float]:
    start = time.perf_counter()
    carrier, *platforms = add_all(
        server,
        [
            ("carrier", "bench-carrier"),
            *(("platform", f"bench-p{i:02d}") for i in range(PLATFORMS)),
        ],
    )
    print(f"  registered 1 carrier, {PLATFORMS} platforms in {time.perf_counter() - start:.1f} s")
    key_id = await active_key_id(carrier)
    start = time.perf_counter()
    inserted = await load(plan, platforms, key_id, args.in_flight)
    elapsed = time.perf_counter() - start
    assert inserted == plan.bindings, (inserted, plan.bindings)
    row(f"load: PublishBindings, {args.in_flight} batches in flight", inserted / elapsed, "rows/s")
    print(f"  loaded {inserted:,} bindings in {elapsed:.1f} s")
    start = time.perf_counter()
    established = plan.tokens[: plan.reissued + plan.queried]
    async with secure_channel(carrier) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        for request in lifecycle_requests(established, key_id, ISSUED, plan.issued_us):
            response = await stub.ReportLifecycle(request, timeout=300)
            assert response.applied == len(request.events) and not response.orders_created
    print(
        f"  ISSUED {len(established):,} numbers (long ago) in {time.perf_counter() - start:.1f} s"
    )
    return carrier, platforms, key_id, inserted / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindings", type=int, default=1_000_000)
    parser.add_argument("--reissued", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="--bindings 100000 --reissued 1000")
    parser.add_argument("--in-flight", type=int, default=4, help="PublishBindings at once")
    parser.add_argument(
        "--worker-procs",
        type=int,
        default=0,
        help="processes for the 20 platform workers (0: asyncio tasks in this process)",
    )
    parser.add_argument("--consumer", choices=("raw", "sdk"), default="raw")
    parser.add_argument("--ack-batch", type=int, default=ACK_BATCH)
    parser.add_argument("--queries", type=int, default=500, help="holder queries, sequential")
    parser.add_argument(
        "--query-during",
        type=float,
        default=0.0,
        help="holder queries/s issued while the batch is processed (0: none)",
    )
    parser.add_argument("--py-spy", metavar="OUT", help="profile the server in the window")
    parser.add_argument(
        "--synchronous",
        choices=("both", "FULL", "NORMAL"),
        default="both",
        help="SQLite's PRAGMA synchronous: FULL (the registry's), NORMAL, or both (default)",
    )
    parser.add_argument(
        "--database-url",
        help="run the registry on this PostgreSQL database (its schema is dropped first)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.bindings, args.reissued = 100_000, 1_000
    if args.reissued < 1 or args.bindings < PER_TOKEN * (args.reissued + 1):
        parser.error("want --reissued >= 1 and --bindings >= 10 x (--reissued + 1)")
    queried = min(args.queries, args.bindings // PER_TOKEN - args.reissued)
    plan = Plan.make(args.bindings, args.reissued, max(1, queried))
    print(
        f"reissue: {PLATFORMS} platforms, {plan.bindings:,} bindings, {plan.reissued:,} numbers "
        f"REISSUED ({PER_TOKEN} bindings each), "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, workers: "
        + (f"{args.worker_procs} processes" if args.worker_procs else "asyncio tasks")
        + f", consumer {args.consumer}, acks of up to {args.ack_batch}"
    )
    if args.database_url:
        return _main_postgresql(args, plan)
    modes = ("FULL", "NORMAL") if args.synchronous == "both" else (args.synchronous,)
    runs = {mode: one_run(mode, plan, args) for mode in modes}
    if len(runs) == 2:
        compare_synchronous(runs["FULL"], runs["NORMAL"])
    return 0 if all(got.revocation_done for got, _ in runs.values()) else 1


def one_run(mode: str, plan: Plan, args: argparse.Namespace) -> tuple[Outcome, float]:
    """The whole bench on a registry whose SQLite runs synchronous=`mode`; returns the
    outcome and the load's publish rate (rows/s)."""
    print(f"\n  -- SQLite synchronous={mode} --")
    with tempfile.TemporaryDirectory(prefix="numbind-bench-floor-") as scratch:
        copy = Path(scratch) / "copy.db"
        with registry_process({"NUMBIND_SQLITE_SYNCHRONOUS": mode}) as server:
            carrier, platforms, key_id, load_rate = asyncio.run(setup(server, plan, args))
            store = server.data / "registry.db"
            start = time.perf_counter()
            copy_store(store, copy)
            print(
                f"  store {_mb(store):,.0f} MB + WAL {_mb(store.with_name('registry.db-wal')):,.0f}"
                f" MB; copied for the floor in {time.perf_counter() - start:.1f} s"
            )
            got = asyncio.run(reissue(server.proc.pid, carrier, platforms, plan, key_id, args))
        report(got, plan, copy)
        shutil.rmtree(scratch, ignore_errors=True)
    return got, load_rate


def compare_synchronous(full: tuple[Outcome, float], normal: tuple[Outcome, float]) -> None:
    """FULL beside NORMAL for the figures durability costs: the report's one big commit,
    the whole batch, and the load's PublishBindings."""
    (f, f_load), (n, n_load) = full, normal
    print("\n  SQLite synchronous             FULL         NORMAL   ratio (FULL / NORMAL)")
    for label, a, b in (
        ("publish (load), rows/s", f_load, n_load),
        ("report call latency, ms", f.report_s * 1000, n.report_s * 1000),
        ("report to last ack, ms", f.total_s * 1000, n.total_s * 1000),
        ("events/s through the feed", f.orders / f.total_s, n.orders / n.total_s),
    ):
        print(f"  {label:<28} {a:>12,.0f} {b:>14,.0f}   {a / b:.2f}")


def _main_postgresql(args: argparse.Namespace, plan: Plan) -> int:
    """The same run on PostgreSQL; its floors are measured on the live store just before the
    report, each in a transaction rolled back (bench._pgfloor)."""
    from bench._pgfloor import floors, reset_schema

    reset_schema(args.database_url)
    with registry_process(env={"NUMBIND_DATABASE_URL": args.database_url}) as server:
        carrier, platforms, key_id, _ = asyncio.run(setup(server, plan, args))
        measured = floors(args.database_url, plan.tokens[: plan.reissued])
        got = asyncio.run(reissue(server.proc.pid, carrier, platforms, plan, key_id, args))
    report(got, plan, None, measured)
    return 0 if got.revocation_done else 1


def _mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def report(
    got: Outcome,
    plan: Plan,
    copy: Path | None,
    measured: tuple[tuple[int, float], AppendTimes] | None = None,
) -> None:
    full_size = plan.bindings >= 1_000_000 and plan.reissued >= 10_000
    if copy is not None:
        second = copy.with_name("copy2.db")
        copy_store(copy, second)  # each measure on its own untouched copy
        raw_n, raw_s = raw_floor(copy, plan.tokens[: plan.reissued])
        app = registry_append(second, plan.tokens[: plan.reissued])
        engine = "sqlite3"
    else:
        assert measured is not None
        (raw_n, raw_s), app = measured
        engine = "psycopg"
    floor = raw_n / raw_s
    rate = got.orders / got.total_s
    acked = sum(w.acked for w in got.workers)
    print(
        f"  {got.orders:,} orders; acked {acked:,} "
        f"(+{sum(w.duplicates for w in got.workers)} duplicate, "
        f"{sum(w.redelivered for w in got.workers)} redelivered) in "
        f"{sum(w.ack_calls for w in got.workers):,} AckEvents calls; "
        f"revocation DONE everywhere: {got.revocation_done}"
    )
    floor_label = "orders+feed INSERTs, 1 txn"
    row(f"floor: raw {engine} orders+feed inserts, 1 txn", floor, "rows/s")
    row(
        "storage: orders.append + commit, same orders",
        app.orders / (app.append_s + app.commit_s),
        "rows/s",
        floor,
        floor_label,
    )
    print(
        f"    (lookup {app.lookup_s * 1000:,.0f} ms + append {app.append_s * 1000:,.0f} ms"
        f" + commit {app.commit_s * 1000:,.0f} ms for {app.orders:,} orders)"
    )
    row("report call latency (REISSUED batch)", got.report_s * 1000, "ms")
    row("first event at any platform", got.first_event_s * 1000, "ms")
    row("last event at the last platform", got.last_event_s * 1000, "ms")
    row("report call to last platform's last ack", got.total_s * 1000, "ms")
    row("events/s through the feed (orders / total)", rate, "ev/s", floor, floor_label)
    row(
        "  after the report (orders / (total - report))",
        got.orders / (got.total_s - got.report_s),
        "ev/s",
        floor,
        floor_label,
    )
    print(
        f"  {'CPU in the window: server / clients':<46} {got.server_cpu_s:>9,.1f} s / "
        f"{got.client_cpu_s:,.1f} s (of {got.total_s * (os.cpu_count() or 1):,.1f} core-s)"
    )
    q = [x * 1000 for x in got.queries]
    print(
        f"  holder QueryBindings, {len(q)} sequential, 10 bindings: p50 "
        f"{statistics.median(q):.2f} ms  p99 {percentile(q, 0.99):.2f} ms  "
        f"max {max(q):.2f} ms"
    )
    if got.during:
        d = [x * 1000 for x in got.during]
        print(
            f"  holder QueryBindings during the batch ({len(d)}): p50 "
            f"{statistics.median(d):.1f} ms  p99 {percentile(d, 0.99):.1f} ms  "
            f"max {max(d):.1f} ms"
        )
    p99 = percentile(q, 0.99)
    target = got.total_s < 15 and p99 < 10
    print(
        f"  targets (whole batch < 15 s, query p99 < 10 ms): "
        f"{'met' if target else 'NOT met'} ({got.total_s:.1f} s, {p99:.2f} ms)"
        + ("" if full_size else "; they are set for 1,000,000 bindings / 10,000 numbers")
    )


if __name__ == "__main__":
    raise SystemExit(main())
