"""bench/reissue.py's measures and its printout: server CPU from /proc, py-spy around the
window, the outcome of a run, FULL beside NORMAL, and the report beside the floor."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench._harness import row
from bench._loop_floor import LoopFloor
from bench._order_states import OrderStates
from bench._pgfloor import PgFloors
from bench._reissue_floor import copy_store, loop_floor, raw_floor, registry_append
from bench._reissue_plan import Plan, percentile
from bench._reissue_workers import WorkerResult


# -- measures ----------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """utime + stime of every process named `postgres` on this machine (the server and its
    backends: a local PostgreSQL's share of the window; a backend that exits within the
    window takes its share with it)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += proc_cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


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
    postgres_cpu_s: float | None
    workers: list[WorkerResult]
    queries: list[float]
    during: list[float]
    revocation_done: bool
    # --order-states (PostgreSQL): the window's orders by state over time.
    order_states: OrderStates | None = None


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


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def report(
    got: Outcome,
    plan: Plan,
    copy: Path | None,
    measured: PgFloors | None = None,
) -> None:
    full_size = plan.bindings >= 1_000_000 and plan.reissued >= 10_000
    if copy is not None:
        second = copy.with_name("copy2.db")
        copy_store(copy, second)  # each measure on its own untouched copy
        raw_n, raw_s = raw_floor(copy, plan.tokens[: plan.reissued])
        loop = loop_floor(copy, plan.tokens[: plan.reissued])
        app = registry_append(second, plan.tokens[: plan.reissued])
        engine, how = "sqlite3", "INSERTs"
    else:
        assert measured is not None
        (raw_n, raw_s), app, loop = measured
        engine, how = "psycopg", "COPY"
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
    floor_label = f"orders {how}, 1 txn"
    row(f"floor: raw {engine} orders {how}, 1 txn", floor, "rows/s")
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
        + (f"; PostgreSQL {got.postgres_cpu_s:,.1f} s" if got.postgres_cpu_s is not None else "")
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
    scale = "" if full_size else "; they are set for 1,000,000 bindings / 10,000 numbers"
    print(
        f"  first round's targets (whole batch < 15 s, query p99 < 10 ms): "
        f"{'met' if target else 'NOT met'} ({got.total_s:.1f} s, {p99:.2f} ms){scale}"
    )
    _loop_floor(got, loop)
    if got.order_states is not None:
        got.order_states.show(got.orders)
    if measured is not None:  # PostgreSQL: issue 14's targets for the production store
        print(
            f"  PostgreSQL targets: first event < 2 s {_mark(got.first_event_s < 2)} "
            f"({got.first_event_s:.2f} s), last ack < 10 s {_mark(got.total_s < 10)} "
            f"({got.total_s:.1f} s){scale}"
        )


def _loop_floor(got: Outcome, loop: LoopFloor) -> None:
    """The whole loop's database floor (bench._loop_floor) beside the last ack: what
    share of the window the design's own writes need on this machine."""
    print(
        f"  floor: the loop's database writes, 1 txn, {loop.orders:,} orders: "
        f"{loop.total_s:.2f} s  (last ack {got.total_s:.1f} s; ratio floor / last ack "
        f"{loop.total_s / got.total_s:.2f})"
    )
    print("    " + "; ".join(f"{name} {s:.2f} s" for name, s in loop.phases))
    if loop.parallel_s:
        print(
            f"    split over {loop.connections} connections at once: {loop.parallel_s:.2f} s "
            f"(ratio floor / last ack {loop.parallel_s / got.total_s:.2f})"
        )


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"
