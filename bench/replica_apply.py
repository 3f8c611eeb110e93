"""A member applying the hub's REISSUED events, in process: CPU seconds of the apply alone.

The federation bench's last ack moves with the shared machine's load; this one times
what a member's replica does per reissue (services.replication's chunk transaction:
lifecycle decisions, orders, feed entries and their log leaves) by the thread's CPU time,
on a fresh SQLite store holding --numbers numbers with --per-number bindings each over
--platforms platforms. The numbers are ISSUED first (not timed), then REISSUED in chunks
of --chunk events, as the replica applies a burst.

    .venv/bin/python -m bench.replica_apply [--numbers 3000] [--per-number 5] [--rounds 3]

NUMBIND_BENCH_PROFILE=OUT.pstats: the timed part under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import tempfile
import time
from pathlib import Path

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import LifecycleKind, Principal
from numbind.registry.services.lifecycle import LifecycleService, MappedEvent
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import migrate, principals
from numbind.registry.storage.db import Database, Session

KEY_ID = "0123456789abcdef"
DAY_US = 86_400_000_000


def _store(root: Path, numbers: int, per_number: int, platforms: int) -> tuple[Database, Principal]:
    db = Database(f"sqlite:///{root / 'registry.db'}")
    migrate.upgrade(db.write_engine)
    hub = db.transact(lambda s: principals.register(s, "registry", "hub"))
    pks = db.transact(
        lambda s: [principals.register(s, "platform", f"p{i:02d}").pk for i in range(platforms)]
    )
    now = time.time_ns() // 1000
    rows = [
        (pks[(n + j) % platforms], KEY_ID, n.to_bytes(32, "big"), j.to_bytes(8, "big"),
         now - 10 * DAY_US, 1, 1, n % 65536, os.urandom(32), now)
        for n in range(numbers) for j in range(per_number)
    ]  # fmt: skip

    def fill(s: Session) -> None:
        s.connection().exec_driver_sql(
            "INSERT INTO bindings (platform_pk, key_id, token, account_ref, bound_us, kind,"
            " state, bucket, digest, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    db.transact(fill)
    return db, hub


def _events(numbers: range, kind: LifecycleKind, at_us: int) -> list[MappedEvent]:
    return [
        MappedEvent(StoreToken(n.to_bytes(32, "big")), int(kind), at_us, "rev-1") for n in numbers
    ]


def run(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="numbind-bench-apply-") as tmp:
        db, hub = _store(Path(tmp), args.numbers, args.per_number, args.platforms)
        try:
            notifier = FeedNotifier()
            service = LifecycleService(db, TokenMapper.__new__(TokenMapper), notifier, 86400.0,
                                       report_at="hub")  # fmt: skip
            now = time.time_ns() // 1000

            def apply(part: list[MappedEvent]) -> int:
                done = db.transact(lambda s: service.apply_mapped(s, hub, KEY_ID, part))
                return int(done["orders_created"])

            issued = _events(range(args.numbers), LifecycleKind.ISSUED, now - 20 * DAY_US)
            for i in range(0, len(issued), args.chunk):
                apply(issued[i : i + args.chunk])
            reissued = _events(range(args.numbers), LifecycleKind.REISSUED, now - DAY_US)
            where = os.environ.get("NUMBIND_BENCH_PROFILE")
            profile = cProfile.Profile(time.thread_time) if where else None
            start = time.thread_time()
            if profile is not None:
                profile.enable()
            made = 0
            for i in range(0, len(reissued), args.chunk):
                made += apply(reissued[i : i + args.chunk])
            used = time.thread_time() - start
            assert made == args.numbers * args.per_number, made
            if profile is not None and where:
                profile.disable()
                profile.dump_stats(where)
            return used
        finally:
            db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=3000)
    parser.add_argument("--per-number", type=int, default=5)
    parser.add_argument("--platforms", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    times = [run(args) for _ in range(args.rounds)]
    orders = args.numbers * args.per_number
    print(
        f"replica apply: {args.numbers:,} REISSUED numbers, {orders:,} orders, chunks of "
        f"{args.chunk}: CPU {statistics.median(times):.3f} s median of "
        f"{', '.join(f'{t:.3f}' for t in times)} ({statistics.median(times) / orders * 1e6:.1f}"
        f" us/order); load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
