"""A carrier's REISSUED batch at scale: revoked and acked at every platform, beside the floor.

Issue 6 item 8. With 20 platforms and --bindings (1,000,000) bindings in the store, a carrier
reports --reissued (10,000) numbers REISSUED in one ReportLifecycle call; every number carries
10 bindings at 10 platforms, made long before the new tenure, so the report creates
10 x --reissued revocation orders (100,000). Platform workers, their streams open and idle
before the clock starts, follow their feeds and ack as fast as they can (outcome UNBOUND, up
to --ack-batch 500 acks per AckEvents call, one call in flight per platform). Measured:

- report call latency (until every order exists: the report commits its triggers and
  the orders follow in chunks, services.local_apply);
- time from just before the report's call to the return of the last platform's last ack;
- events/s through the feed: orders / that time;
- holder query latency (Holders.QueryBindings, one attestation for a number with 10 live
  bindings), p50/p99 over --queries sequential calls after the batch, at that store size;
  with --query-during R, also while the batch is processed (R queries/s);
- CPU seconds the server and the clients used in the window (from /proc), to tell which
  side is the bottleneck.

Floor: raw feed inserts/s in the same store: a copy of the registry's SQLite file taken just
before the report (online backup API), one transaction of plain sqlite3 executemany INSERTs
of one `orders` row per order, its place in its platform's feed included (the transactional
outbox's irreducible write). Beside it, on a second copy, `registry.storage.orders.append`
for the same orders (the registry's own write of those rows plus the REVOKING marks), to
tell the store layer's cost from the rest of the path. Then the whole loop's database writes
(bench._loop_floor: the orders, REVOKING and REVOKED marks, acks and log leaves the design
requires), in one transaction rolled back, printed in seconds beside the last ack. On
PostgreSQL (--database-url) the floors run on the live store after the window, for as many
numbers the batch left alone, each rolled back; the orders floor and the loop's inserts are
COPY, its updates UPDATE ... FROM unnest, and the loop runs again split over one connection
per core.

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
    .venv/bin/python -m bench.reissue --database-url URL [--processes N] [--order-states S] [...]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.v1 import carriers_pb2_grpc, holders_pb2, holders_pb2_grpc

from bench import _live
from bench._harness import BENCH_ENV, add_all, registry_process, row
from bench._order_states import OrderStates
from bench._reissue_floor import copy_store
from bench._reissue_plan import (
    ACK_BATCH,
    ISSUED,
    PER_TOKEN,
    PLATFORMS,
    REISSUED,
    Plan,
    active_key_id,
    floor_room,
    lifecycle_requests,
    load,
    percentile,
    query_latencies,
    signed_queries,
)
from bench._reissue_report import (
    Outcome,
    compare_synchronous,
    mb,
    postgres_cpu_seconds,
    proc_cpu_seconds,
    report,
    start_py_spy,
    stop_py_spy,
)
from bench._reissue_workers import ProcResult, run_workers, worker_process

# What bench/scale.py and bench/federation.py import from here (defined in bench._reissue_*).
__all__ = [
    "ISSUED",
    "PER_TOKEN",
    "PLATFORMS",
    "REISSUED",
    "Plan",
    "active_key_id",
    "lifecycle_requests",
    "load",
    "main",
    "percentile",
    "query_latencies",
    "run_workers",
    "signed_queries",
]


# -- the run ----------------------------------------------------------------------------------
async def reissue(
    server_pids: list[int],
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
    states: OrderStates | None = None
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
            spy = start_py_spy(server_pids[0], args.py_spy)
            states = (
                OrderStates(args.database_url, args.order_states)
                if args.order_states and args.database_url
                else None
            )
            if states is not None:
                states.start()
            server_cpu0 = sum(proc_cpu_seconds(pid) for pid in server_pids)
            client_cpu0 = time.process_time()
            pg_cpu0 = postgres_cpu_seconds() if args.database_url else None
            t0 = time.monotonic()
            orders = 0
            revocation_ids = []
            for request in requests:
                response = await stub.ReportLifecycle(request, timeout=600)
                orders += response.orders_created
                revocation_ids.append(response.revocation_id)
            report_s = time.monotonic() - t0
            if states is not None:
                states.report_done()
            if procs:
                results: list[ProcResult] = []
                for _ in procs:
                    kind, payload = await loop.run_in_executor(None, out.get, True, 600)
                    if kind != "done":
                        raise RuntimeError(f"worker process failed: {payload}")
                    results.append(payload)
            else:
                results = list(await asyncio.gather(*worker_tasks))
            server_cpu = sum(proc_cpu_seconds(pid) for pid in server_pids) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
            pg_cpu = None if pg_cpu0 is None else postgres_cpu_seconds() - pg_cpu0
            if states is not None:
                states.stop()
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
        if states is not None:
            states.stop()
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
        postgres_cpu_s=pg_cpu,
        workers=workers,
        queries=queries,
        during=during,
        revocation_done=done,
        order_states=states,
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
    parser.add_argument("--py-spy", metavar="OUT", help="profile the (first) server in the window")
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
    parser.add_argument(
        "--order-states",
        type=float,
        default=0.0,
        metavar="S",
        help="with --database-url: sample the orders by state every S seconds in the window "
        "and print the backlog left at the report's end (bench._order_states; 0: off)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="with --database-url: registry processes on the one database (the carrier and "
        "the load at the first, platform i at process i mod N)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.bindings, args.reissued = 100_000, 1_000
    if args.order_states and (args.order_states < 0.1 or not args.database_url):
        parser.error("want --order-states >= 0.1 seconds, and only with --database-url")
    if args.processes < 1 or (args.processes > 1 and not args.database_url):
        parser.error("want --processes >= 1, and more than 1 only with --database-url")
    if args.reissued < 1 or args.bindings < PER_TOKEN * (args.reissued + 1):
        parser.error("want --reissued >= 1 and --bindings >= 10 x (--reissued + 1)")
    if args.database_url and not floor_room(args.bindings, args.reissued):
        parser.error("with --database-url, want --bindings >= 20 x --reissued")
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
                f"  store {mb(store):,.0f} MB + WAL {mb(store.with_name('registry.db-wal')):,.0f}"
                f" MB; copied for the floor in {time.perf_counter() - start:.1f} s"
            )
            got = asyncio.run(reissue([server.proc.pid], carrier, platforms, plan, key_id, args))
        report(got, plan, copy)
        shutil.rmtree(scratch, ignore_errors=True)
    return got, load_rate


def _main_postgresql(args: argparse.Namespace, plan: Plan) -> int:
    """The same run on PostgreSQL; its floors are measured on the live store after the
    window, once the registry processes have stopped, each in a transaction rolled back
    (bench._pgfloor), for as many numbers the batch left alone as it reissued (the same
    bindings per number, at the same store size). Measured before the window, they left
    about a million dead row versions in the tables the window then wrote. With
    --processes N, N registry processes share the database: platform i streams and acks at
    process i mod N (as a TCP load balancer would place its connection), the carrier
    reports to the first."""
    from bench._pgfloor import floors, reachable, reset_schema

    url = args.database_url
    why = reachable(url)
    if why is not None:
        print(f"  PostgreSQL unreachable at {url}: {why}")
        return 2
    reset_schema(url)
    with _live.data_dir(url) as data, _live.servers(url, data, args.processes, BENCH_ENV) as procs:
        carrier, platforms, key_id, _ = asyncio.run(setup(procs[0], plan, args))
        platforms = [_live.rehome(b, procs[i % len(procs)].listen) for i, b in enumerate(platforms)]
        pids = [p.proc.pid for p in procs]
        got = asyncio.run(reissue(pids, carrier, platforms, plan, key_id, args))
    measured = floors(url, plan.untouched)
    print(f"  registry processes on the one database: {args.processes}")
    report(got, plan, None, measured)
    return 0 if got.revocation_done else 1


if __name__ == "__main__":
    raise SystemExit(main())
