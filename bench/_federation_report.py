"""bench.federation's figures and how they are printed: each beside the single registry's
in the same run, the ratio, and issue 11's targets at full size."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench._reissue_plan import percentile


@dataclass
class Figures:
    report_s: float
    first_event_s: float
    last_ack_s: dict[str, float]
    lags: list[float]
    queries: list[float]
    orders_acked: int
    notes: list[str] = field(default_factory=list)
    # CPU seconds each server process used from the report's start to the last ack, and
    # the log checkpoints each signed meanwhile.
    cpu_s: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[str, int | None] = field(default_factory=dict)
    # The floor beside the holder query: one gRPC+mTLS round trip to the same registry over
    # the same channel (grpc.health's Check: no authentication, no store), as many times.
    round_trips: list[float] = field(default_factory=list)
    # The floor beside the last ack: each registry's share of the loop's database writes
    # (bench._loop_floor on a copy of its store taken after the window, for as many numbers
    # the batch left alone, all at once), in seconds.
    loop_floor_s: dict[str, float] = field(default_factory=dict)


def _ms(x: float) -> str:
    return f"{x * 1000:>10,.1f} ms"


# Issue 11's targets for the federation at full size (--full) on a 2-core machine.
TARGETS = {"first event": 2.0, "last ack": 10.0, "holder query p99": 0.020}


def report(single: Figures | None, fed: Figures, *, full: bool) -> None:
    """`full`: the issue's size, where the targets apply (marked met or MISSED); `single`
    None (--federation-only): the federation's figures alone."""
    alone = single is None
    if single is None:
        single = Figures(0.0, 0.0, {"-": 0.0}, [0.0], [0.0], 0)

    def line(label: str, one: float, many: float, target: str | None = None) -> None:
        ratio = f"{many / one:6.2f}" if one > 0 else "   n/a"
        goal = ""
        if target is not None and full:
            limit = TARGETS[target]
            goal = f"   target < {_ms(limit).strip()}: {'met' if many < limit else 'MISSED'}"
        print(f"  {label:<44} {_ms(one)}   {_ms(many)}   ratio {ratio}{goal}", flush=True)

    print(f"  {'figure':<44} {'single':>13}   {'federation':>13}   (federation / single)")
    line("report call latency (REISSUED batch)", single.report_s, fed.report_s)
    line("report start -> first event, any platform", single.first_event_s, fed.first_event_s,
         "first event")  # fmt: skip
    (one,) = single.last_ack_s.values()
    for m, t in fed.last_ack_s.items():
        line(f"report start -> last ack at member {m}", one, t, "last ack")
    # Probes are reported behind the batch in the one log: at a member their lag is
    # replication + apply (of the backlog ahead) + feed; at the single registry, report + feed.
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        line(f"replication lag while loaded, {name} (n={len(fed.lags)})",
             percentile(single.lags, q), percentile(fed.lags, q))  # fmt: skip
    line("holder query p50", statistics.median(single.queries), statistics.median(fed.queries))
    line("holder query p99", percentile(single.queries, 0.99), percentile(fed.queries, 0.99),
         "holder query p99")  # fmt: skip
    print(f"  orders acked: single {single.orders_acked:,}, federation {fed.orders_acked:,}")
    cpu = ", ".join(f"{n} {t:.1f} s" for n, t in sorted(fed.cpu_s.items()))
    one_cpu = "-" if alone else f"{sum(single.cpu_s.values()):.1f} s"
    print(f"  server CPU, report start -> last ack: single {one_cpu}; federation {cpu}")
    signed = ", ".join(f"{n} {k}" for n, k in sorted(fed.checkpoints.items()))
    print(f"  log checkpoints signed meanwhile: federation {signed}")
    if fed.round_trips:
        print(f"  floor: one gRPC+mTLS round trip to the hub (grpc.health Check): {_trip(fed)}"
              + ("" if alone else f"; single registry {_trip(single)}"))  # fmt: skip
    for name, figures in (("federation", fed), ("single registry", single)):
        if figures.loop_floor_s:
            print(f"  floor, {name}: {_loop(figures)}")
    for note in single.notes + fed.notes:
        print(f"  note: {note}")


def _loop(figures: Figures) -> str:
    """Each registry's loop floor beside its last ack, and the ratio."""
    ack = figures.last_ack_s
    return "; ".join(
        f"{n} {s:.1f} s of database writes (loop floor, SQLite, all at once)"
        + (f" / last ack {ack[n]:.1f} s = {s / ack[n]:.2f}" if n in ack else "")
        for n, s in sorted(figures.loop_floor_s.items())
    )


def _trip(figures: Figures) -> str:
    """The round trip's p50 / p99, and the holder query's p50 over it."""
    trips = figures.round_trips
    over = statistics.median(figures.queries) / statistics.median(trips)
    return (
        f"p50 {_ms(statistics.median(trips)).strip()}, p99 {_ms(percentile(trips, 0.99)).strip()}"
        f" (holder query p50 / round trip p50: {over:.1f})"
    )
