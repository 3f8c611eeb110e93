"""A carrier's REISSUED batch in a federation of three, beside a single registry, same run.

Issue 11 item 7. The federation: the hub (lifecycle authority and token service, the
carrier) and two members (binding registries), each `numbind serve` in its own process on
its own SQLite store, joined with `numbind federation init/request/add-member/accept`.
--bindings bindings over 20 platforms, ten at each member (every number has 10 bindings at
10 consecutive platforms, so most numbers span both members); --reissued numbers are
reported REISSUED at the hub in one ReportLifecycle call; members learn it by replication
and create orders for their own platforms, whose workers follow their feeds and ack.
The single registry: the same data set, platforms and carrier on one `numbind serve`.

Measured, for both:
- report call latency, and from just before it: the first event at any platform, and the
  last ack at each member's last platform (the single registry is its own one member);
- lifecycle lag while loaded: every 0.25 s during the batch a DEACTIVATED report for a
  probe number bound at one probe platform per member; the time from the report's call to
  the notice arriving in that platform's feed (replication + apply + feed), p50/p99, over
  every probe (the bench waits for the last ones' notices after the batch, up to 60 s);
- holder QueryBindings at the hub (one attestation, a number with 10 bindings, which in the
  federation span both members: the hub's fan-out), p50/p99 over --queries sequential
  calls after the batch, beside its floor: as many gRPC+mTLS round trips to the hub over the
  same channel (grpc.health's Check: no authentication, no store).
Each federation figure is printed beside the single registry's and the ratio, and the
issue's targets (first event < 2 s, last ack < 10 s, holder query p99 < 20 ms: at --full
size) marked met or MISSED. The machine is shared: figures measured under load vary from
run to run; the load average is printed at the start and the end.

Also printed: each server process's CPU seconds from the report's start to the last ack
(bench.federation_cpu: steadier than wall time on a shared machine) and the log
checkpoints each signed meanwhile.

    .venv/bin/python -m bench.federation [--full] [--bindings N] [--reissued N] [--queries N]
                                         [--federation-only]

NUMBIND_BENCH_PROFILE=DIR runs the federation's servers under cProfile (bench._profiled,
per-thread CPU time) and leaves DIR/hub.pstats, net.pstats, bank.pstats, cleared when the
report starts (the burst only); NUMBIND_BENCH_PYSPY=DIR samples them with py-spy instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    holders_pb2_grpc,
    platforms_pb2,
    platforms_pb2_grpc,
)

from bench._federation_report import Figures, report
from bench._harness import (
    ServerProcess,
    free_port,
    numbind,
    registry_process,
    serve,
    wait_listening,
)
from bench._reissue_floor import copy_store, loop_floor
from bench._reissue_plan import floor_room, round_trips
from bench.federation_cpu import BurstMeter
from bench.reissue import (
    ISSUED,
    PER_TOKEN,
    PLATFORMS,
    REISSUED,
    Plan,
    active_key_id,
    lifecycle_requests,
    load,
    query_latencies,
    run_workers,
    signed_queries,
)

MEMBERS = ("net", "bank")
DEACTIVATED = carriers_pb2.LifecycleKind.Value("LIFECYCLE_KIND_DEACTIVATED")
PROBES = 400
PROBE_EVERY_S = 0.25
# The longest wait after the last ack for the probes' notices still on their way.
PROBES_SETTLE_S = 60.0
ENV = {
    "NUMBIND_QUOTA_RATE": "10000000",
    "NUMBIND_QUOTA_BURST": "10000000",
    "NUMBIND_QUOTA_DAILY_CAP": "1000000000",
    "NUMBIND_LOG_LEVEL": "WARNING",
}


def _serve_module(name: str) -> list[str]:
    """`numbind`, or under cProfile (bench._profiled) when NUMBIND_BENCH_PROFILE names a
    directory: each server's profile lands there as NAME.pstats when it stops."""
    where = os.environ.get("NUMBIND_BENCH_PROFILE")
    if not where:
        return ["numbind.cli"]
    Path(where).mkdir(parents=True, exist_ok=True)
    return ["bench._profiled", str(Path(where) / f"{name}.pstats")]


@contextmanager
def federation_processes() -> Iterator[dict[str, ServerProcess]]:
    """hub + members, joined by the federation files, each serving in its own process."""
    with tempfile.TemporaryDirectory(prefix="numbind-bench-fed-") as tmp:
        root = Path(tmp)
        names = ("hub", *MEMBERS)
        listen = {n: f"127.0.0.1:{free_port()}" for n in names}
        data = {n: root / n for n in names}
        for n in names:
            numbind("admin", "init", "--data-dir", str(data[n]), "--registry", listen[n], env=ENV)
        fed = ("federation",)
        numbind(*fed, "init", "--data-dir", str(data["hub"]), "--id", "bench",
                "--address", listen["hub"])  # fmt: skip
        for m in MEMBERS:
            req, grant = root / f"{m}.req", root / f"{m}.grant"
            numbind(*fed, "request", "--data-dir", str(data[m]), "--id", m,
                    "--address", listen[m], "--out", str(req))  # fmt: skip
            numbind(*fed, "add-member", "--data-dir", str(data["hub"]), str(req),
                    "--out", str(grant))  # fmt: skip
            numbind(*fed, "accept", "--data-dir", str(data[m]), str(grant))
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs = {n: root / f"{n}.log" for n in names}
        try:
            for n in names:
                procs[n] = serve(data[n], listen[n], logs[n], ENV, module=_serve_module(n))
            wait_listening({n: (procs[n], logs[n]) for n in names}, 60)
            yield {n: ServerProcess(data[n], listen[n], procs[n]) for n in names}
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=30)


@dataclass
class Setup:
    carrier: Bundle
    platforms: list[Bundle]
    member_of: list[str]  # per platform
    probes: dict[str, Bundle]  # member -> probe platform
    key_id: str


async def setup(servers: dict[str, ServerProcess], plan: Plan, probe_tokens: list[bytes],
                in_flight: int) -> Setup:  # fmt: skip
    """Carrier at the hub, platforms split over the members (or all at one registry)."""
    members = [m for m in MEMBERS if m in servers] or ["hub"]
    member_of = [members[(i * len(members)) // PLATFORMS] for i in range(PLATFORMS)]
    start = time.perf_counter()
    wanted: dict[str, list[tuple[str, str]]] = {m: [] for m in {"hub", *members}}
    wanted["hub"].append(("carrier", "bench-carrier"))
    for i, m in enumerate(member_of):
        wanted[m].append(("platform", f"bench-p{i:02d}"))
    for m in members:
        wanted[m].append(("platform", f"probe-{m}"))
    made = {m: {p: register(servers[m], *p) for p in wanted[m]} for m in wanted}
    carrier = made["hub"][("carrier", "bench-carrier")]
    platforms = [made[m][("platform", f"bench-p{i:02d}")] for i, m in enumerate(member_of)]
    probes = {m: made[m][("platform", f"probe-{m}")] for m in members}
    print(f"    registered {sum(map(len, wanted.values()))} principals in "
          f"{time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
    key_id = await active_key_id(carrier)
    start = time.perf_counter()
    inserted = await load(plan, platforms, key_id, in_flight)
    assert inserted == plan.bindings, (inserted, plan.bindings)
    for bundle in probes.values():
        await publish_probes(bundle, probe_tokens, key_id, plan.issued_us - 1_000_000)
    print(f"    loaded {inserted:,} bindings in {time.perf_counter() - start:.1f} s", flush=True)
    established = plan.tokens[: plan.reissued + plan.queried] + probe_tokens
    async with secure_channel(carrier) as channel:
        stub = carriers_pb2_grpc.CarriersStub(channel)
        for request in lifecycle_requests(established, key_id, ISSUED, plan.issued_us - 2):
            await stub.ReportLifecycle(request, timeout=300)
    return Setup(carrier, platforms, member_of, probes, key_id)


def register(server: ServerProcess, role: str, name: str) -> Bundle:
    """In this process, straight into the server's store: on a loaded machine a CLI
    process per principal costs seconds each, and registration is not what is measured."""
    return operator.add_principal(
        Settings(data_dir=server.data),
        role,
        name,
        server.data.parent / "bundles" / name,
        display_name=name,
        category="other" if role == "platform" else "",
        registry_address=server.listen,
    )


async def publish_probes(bundle: Bundle, tokens: list[bytes], key_id: str, bound_us: int) -> None:
    """One binding per probe number at a probe platform; account_ref = the probe's index."""
    request = platforms_pb2.PublishBindingsRequest(request_id=uuid.uuid4().hex)
    for i, token in enumerate(tokens):
        b = request.bindings.add()
        b.token.key_id, b.token.value = key_id, token
        b.account_ref = i.to_bytes(8, "big")
        b.bound_at.FromMicroseconds(bound_us)
        b.kind = common_pb2.BINDING_KIND_LOGIN
    async with secure_channel(bundle) as channel:
        await platforms_pb2_grpc.PlatformsStub(channel).PublishBindings(request, timeout=300)


async def _probe_feed(bundle: Bundle, seen: dict[int, float], ready: asyncio.Event) -> None:
    """Record when each probe's notice reaches this platform's feed."""
    async with secure_channel(bundle) as channel:
        call = platforms_pb2_grpc.PlatformsStub(channel).StreamEvents(
            platforms_pb2.StreamEventsRequest(after_seq=0, heartbeat_seconds=1)
        )
        async for item in call:
            if item.HasField("heartbeat"):
                ready.set()
            for event in item.events.events:
                seen.setdefault(
                    int.from_bytes(event.binding.account_ref[:8], "big"), time.monotonic()
                )


async def measure(s: Setup, plan: Plan, probe_tokens: list[bytes], queries: int,
                  meter: BurstMeter) -> Figures:  # fmt: skip
    expected = plan.expected_orders()
    specs = [(str(b.directory), expected[i]) for i, b in enumerate(s.platforms)]
    ready_left = [len(specs)]
    all_ready = asyncio.Event()

    def on_ready() -> None:
        ready_left[0] -= 1
        if not ready_left[0]:
            all_ready.set()

    workers = [asyncio.ensure_future(run_workers([sp], "raw", 500, on_ready, 900.0))
               for sp in specs]  # fmt: skip
    seen: dict[str, dict[int, float]] = {m: {} for m in s.probes}
    probe_ready = {m: asyncio.Event() for m in s.probes}
    feeds = [asyncio.ensure_future(_probe_feed(b, seen[m], probe_ready[m]))
             for m, b in s.probes.items()]  # fmt: skip
    sent: dict[int, float] = {}
    try:
        await asyncio.wait_for(all_ready.wait(), 120)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in probe_ready.values())), 60)
        requests = lifecycle_requests(plan.tokens[: plan.reissued], s.key_id, REISSUED,
                                      plan.reissued_us)  # fmt: skip
        done = asyncio.Event()
        async with secure_channel(s.carrier) as channel:
            stub = carriers_pb2_grpc.CarriersStub(channel)

            async def probe() -> None:
                for i, token in enumerate(probe_tokens):
                    if done.is_set():
                        return
                    (request,) = lifecycle_requests([token], s.key_id, DEACTIVATED,
                                                    plan.reissued_us)  # fmt: skip
                    sent[i] = time.monotonic()
                    await stub.ReportLifecycle(request, timeout=300)
                    await asyncio.sleep(PROBE_EVERY_S)

            meter.start()
            t0 = time.monotonic()
            prober = asyncio.ensure_future(probe())
            for request in requests:
                await stub.ReportLifecycle(request, timeout=900)
            report_s = time.monotonic() - t0
            results = [r for w in await asyncio.gather(*workers) for r in w.workers]
            cpu_s = meter.stop()
            done.set()
            await prober
            # Every probe's notice, before the queries: a member still applying the probes
            # reported behind the batch would load them, and a notice not waited for would
            # drop out of the lag figures (bounded: one never seen is noted as missing).
            for _ in range(int(PROBES_SETTLE_S * 10)):
                if all(i in seen[m] for m in seen for i in sent):
                    break
                await asyncio.sleep(0.1)
            holders = holders_pb2_grpc.HoldersStub(channel)
            latencies = await query_latencies(
                holders, signed_queries(s.carrier, plan, s.key_id, plan.reissued, queries)
            )
            trips = await round_trips(channel, queries)
    finally:
        for task in [*workers, *feeds]:
            task.cancel()
    by_platform = {r.platform: r for r in results}
    last_ack = {
        m: max(by_platform[b.principal_id].last_ack for b, pm in zip(s.platforms, s.member_of,
               strict=True) if pm == m) - t0
        for m in sorted(set(s.member_of))
    }  # fmt: skip
    lags = [seen[m][i] - sent[i] for m in seen for i in sent if i in seen[m]]
    missing = sum(1 for m in seen for i in sent if i not in seen[m])
    notes = [f"{missing} probe notices not seen"] if missing else []
    return Figures(report_s, min(r.first_event for r in results) - t0, last_ack, lags,
                   latencies, sum(r.acked for r in results), notes, cpu_s,
                   meter.checkpoints, trips)  # fmt: skip


def run(servers: dict[str, ServerProcess], plan: Plan, probes: list[bytes],
        args: argparse.Namespace) -> Figures:  # fmt: skip
    async def go() -> Figures:
        s = await setup(servers, plan, probes, args.in_flight)
        meter = BurstMeter({n: p.proc.pid for n, p in servers.items()},
                           {n: p.data / "registry.db" for n, p in servers.items()})  # fmt: skip
        figures = await measure(s, plan, probes, args.queries, meter)
        # After the window, for as many numbers the batch left alone: measured before it,
        # the floors' copies and processes added 2.3-3.5 s to the last ack.
        figures.loop_floor_s = await asyncio.to_thread(loop_floors, servers, plan.untouched)
        return figures

    return asyncio.run(go())


def loop_floors(servers: dict[str, ServerProcess], tokens: list[bytes]) -> dict[str, float]:
    """Each registry's share of the loop's database writes (bench._loop_floor, SQLite) for
    the live bindings of `tokens`, on a copy of its store, all at once in processes of their
    own as the registries themselves run: seconds per registry that holds bindings (the
    members in a federation, the hub alone otherwise)."""
    from concurrent.futures import ProcessPoolExecutor

    holders = [m for m in MEMBERS if m in servers] or ["hub"]
    with tempfile.TemporaryDirectory(prefix="numbind-bench-fed-floor-") as tmp:
        copies = {n: Path(tmp) / f"{n}.db" for n in holders}
        for n in holders:
            copy_store(servers[n].data / "registry.db", copies[n])
        # A process each, as the registries are: threads of one would share one GIL.
        with ProcessPoolExecutor(max_workers=len(copies)) as pool:
            floors = pool.map(loop_floor, copies.values(), [tokens] * len(copies))
            got = dict(zip(copies, floors, strict=True))
    return {n: f.total_s for n, f in got.items() if f.orders}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Bounded so the whole run (four registries started, data loaded twice) stays within a
    # few minutes on a shared 2-core machine; --full is the issue's size.
    parser.add_argument("--bindings", type=int, default=60_000)
    parser.add_argument("--reissued", type=int, default=600)
    parser.add_argument("--full", action="store_true", help="--bindings 1000000 --reissued 10000")
    parser.add_argument("--in-flight", type=int, default=4, help="PublishBindings at once")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--federation-only", action="store_true",
                        help="skip the single registry (iterating on the federation)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.full:
        args.bindings, args.reissued = 1_000_000, 10_000
    if args.reissued < 1 or not floor_room(args.bindings, args.reissued):
        parser.error("want --reissued >= 1 and --bindings >= 20 x --reissued")
    queried = max(1, min(args.queries, args.bindings // PER_TOKEN - args.reissued))
    plan = Plan.make(args.bindings, args.reissued, queried)
    probes = Plan.make(PROBES * PER_TOKEN, 0, 1, seed=11).tokens[:PROBES]
    print(
        f"federation: hub + {len(MEMBERS)} members vs one registry; {PLATFORMS} platforms, "
        f"{plan.bindings:,} bindings, {plan.reissued:,} numbers REISSUED; SQLite; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; measured on a shared, "
        f"loaded machine (load average {os.getloadavg()[0]:.1f} at the start)",
        flush=True,
    )
    single = None
    if not args.federation_only:
        print("  single registry:", flush=True)
        with registry_process() as one:
            single = run({"hub": one}, plan, probes, args)
    print("  federation of three:", flush=True)
    with federation_processes() as servers:
        fed = run(servers, plan, probes, args)
    report(single, fed, full=(args.bindings, args.reissued) == (1_000_000, 10_000))
    print("  load average (1, 5, 15 min) at the end: "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)  # fmt: skip
    want = plan.reissued * PER_TOKEN
    return 0 if fed.orders_acked == want and (single is None or single.orders_acked == want) else 1


if __name__ == "__main__":
    raise SystemExit(main())
