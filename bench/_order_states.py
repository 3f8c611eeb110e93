"""bench/reissue.py --order-states S (PostgreSQL): the window's orders by state, sampled
every S seconds from a connection of its own, to tell where the time after the report call
goes. The report call ends when the last chunk of orders is committed; the last ack comes
once the platforms have been sent, and have acked, what was still pending or delivered
then. The samples show that backlog and how fast it drains.

A sample counts every order (`GROUP BY state` over the orders' partitions): a few
milliseconds of the server's time per second at 100,000 orders, so it is off by default.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg
from numbind.registry.domain.types import OrderState
from sqlalchemy.engine import make_url

_NAMES = {
    int(OrderState.PENDING): "pending",
    int(OrderState.DELIVERED): "delivered",
    int(OrderState.DONE): "done",
    int(OrderState.REJECTED): "rejected",
}


@dataclass
class Sample:
    at_s: float  # since the sampler's start (the report call's)
    counts: dict[str, int]


@dataclass
class OrderStates:
    """Samples taken from `start` until `stop`; `report_s` marks the report call's end."""

    url: str
    every_s: float
    samples: list[Sample] = field(default_factory=list, init=False)
    report_s: float | None = field(default=None, init=False)
    error: str = field(default="", init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _t0: float = field(default=0.0, init=False)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="order-states", daemon=True)
        self._thread.start()

    def report_done(self) -> None:
        self.report_s = time.monotonic() - self._t0

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(False)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    rows = conn.execute("SELECT state, count(*) FROM orders GROUP BY state")
                    counts = {_NAMES.get(int(s), str(s)): int(n) for s, n in rows}
                    self.samples.append(Sample(time.monotonic() - self._t0, counts))
                    self._stop.wait(self.every_s)
        except psycopg.Error as exc:  # a bench aid: say so, and leave the run alone
            self.error = str(exc).splitlines()[0]

    def show(self, orders: int) -> None:
        if self.error:
            print(f"  orders by state: sampling failed ({self.error})")
            return
        print(
            "  orders by state in the window (s since the report call: pending / delivered / done)"
        )
        line = []
        for s in self.samples:
            c = s.counts
            line.append(
                f"{s.at_s:.1f}s {c.get('pending', 0):,}/{c.get('delivered', 0):,}/"
                f"{c.get('done', 0) + c.get('rejected', 0):,}"
            )
        for i in range(0, len(line), 6):
            print("    " + "  ".join(line[i : i + 6]))
        if self.report_s is None:
            return
        before = [s for s in self.samples if s.at_s <= self.report_s]
        after = [s for s in self.samples if s.at_s > self.report_s]
        if not before or not after:
            return
        at, end = before[-1], after[-1]

        def done(s: Sample) -> int:
            return s.counts.get("done", 0) + s.counts.get("rejected", 0)

        open_then = orders - done(at)
        during = done(at) / at.at_s if at.at_s else 0.0
        drained = (done(end) - done(at)) / (end.at_s - at.at_s)
        print(
            f"    at the report's end ({self.report_s:.1f} s; the sample at {at.at_s:.1f} s):"
            f" {open_then:,} orders not yet acked ({at.counts.get('pending', 0):,} not yet"
            f" sent); acked {during:,.0f}/s"
            f" while the report ran, {drained:,.0f}/s after"
        )
