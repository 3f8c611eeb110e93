"""The shared quota bucket, on SQLite and (when configured) PostgreSQL: one bucket per
principal whoever takes from it, so N registry processes grant what one would."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from numbind.registry.domain.quota import DAY_SECONDS
from numbind.registry.storage import principals, quota
from numbind.registry.storage.db import Database, Session

T0 = 1_700_000_000_000_000
DAY = T0 // 1_000_000 // DAY_SECONDS
RATE, BURST, CAP = 100.0, 500.0, 2_000


def _platform(db: Database, name: str = "acme") -> int:
    return db.transact(lambda s: principals.register(s, "platform", name)).pk


def _take(db: Database, pk: int, n: int, now: int, cap: int = CAP) -> quota.Taken:
    def tx(session: Session) -> quota.Taken:
        taken = quota.take(
            session, pk, n, now_us=now, day=DAY, rate=RATE, burst=BURST, daily_cap=cap
        )
        if not taken.granted:
            raise _Refused(taken)
        return taken

    try:
        return db.transact(tx)
    except _Refused as refused:
        return refused.taken


class _Refused(Exception):
    """Raised inside the unit of work, as the token service does, to roll it back."""

    def __init__(self, taken: quota.Taken) -> None:
        self.taken = taken


def test_burst_then_refused_then_refilled_at_the_rate(db: Database) -> None:
    pk = _platform(db)
    assert _take(db, pk, 500, T0).granted
    refused = _take(db, pk, 50, T0)
    assert not refused.granted and refused.tokens == pytest.approx(0.0)
    assert refused.used_today == 500  # the refused take rolled its count back
    assert not _take(db, pk, 50, T0 + 400_000).granted  # 40 refilled, 50 wanted
    assert _take(db, pk, 50, T0 + 500_000).granted
    assert _take(db, _platform(db, "other"), 500, T0).granted  # a bucket per principal


def test_daily_cap_and_refund(db: Database) -> None:
    pk = _platform(db)
    assert _take(db, pk, 500, T0, cap=700).granted
    refused = _take(db, pk, 300, T0 + 10**9, cap=700)  # bucket full again, cap is not
    assert not refused.granted and refused.used_today == 500
    db.transact(partial(quota.refund, principal_pk=pk, n=400, day=DAY, burst=BURST))
    assert _take(db, pk, 500, T0 + 10**9, cap=700).granted


def test_a_clock_behind_never_drains_the_bucket(db: Database) -> None:
    pk = _platform(db)
    assert _take(db, pk, 100, T0).granted
    assert _take(db, pk, 400, T0 - 5_000_000).granted  # another process's slower clock
    assert not _take(db, pk, 1, T0).granted


def test_concurrent_takers_never_grant_more_than_the_bucket(db: Database) -> None:
    """Eight threads with their own connections, standing in for eight processes, all
    ask at the same instant: exactly the burst is granted, never more."""
    pk = _platform(db)
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def taker() -> None:
        start.wait()
        for _ in range(20):
            if _take(db, pk, 10, T0).granted:
                with lock:
                    granted.append(10)

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 500
