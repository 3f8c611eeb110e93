"""Token-evaluation quotas held in the store, so every registry process spends from one
bucket per principal.

Design: a token bucket row per principal (tokens, updated_us), taken with ONE conditional
UPDATE that refills by the time elapsed, checks there is enough and subtracts, all in the
row's own update (PostgreSQL re-evaluates the WHERE clause on the newest row version when
two processes race, so two takes can never both spend the same tokens). The daily cap is
the same pattern on the per-day usage counter, in the same transaction: a refusal by
either rolls both back. Both statements are plain UPDATE ... RETURNING on one row by
primary key, which Citus, CockroachDB and YugabyteDB run as well.

Cost: one small write transaction per Evaluate call (a batch of up to 4,096 elements),
which replaces the usage-counter write the call made anyway. Alternatives considered: a
per-process share of the rate (rate / N) needs N and wastes the quota of idle processes;
leases of tokens per process (take 10% at a time) cut the writes but over-grant by the
leased-and-unspent amount when a process dies. One row update per call is cheap enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.storage.models import QuotaBucketRow, UsageRow
from sqlalchemy import case, literal, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True)
class Taken:
    """What a take found: granted, or the bucket level / day's use that refused it."""

    granted: bool
    tokens: float
    used_today: int


def _refilled(now_us: int, rate: float, burst: float) -> ColumnElement[float]:
    # Clocks of two processes may differ a little: time never runs backwards here.
    elapsed = case(
        (QuotaBucketRow.updated_us < now_us, literal(now_us) - QuotaBucketRow.updated_us),
        else_=0,
    )
    level = QuotaBucketRow.tokens + elapsed * (rate / 1_000_000)
    return case((level > burst, literal(burst)), else_=level)


def _bucket(
    session: Session, principal_pk: int, n: int, now_us: int, rate: float, burst: float
) -> float | None:
    """Take n from the bucket; the level left, or None when it holds fewer than n."""
    refilled = _refilled(now_us, rate, burst)
    left = session.execute(
        update(QuotaBucketRow)
        .where(QuotaBucketRow.principal_pk == principal_pk, refilled >= n)
        .values(
            tokens=refilled - n,
            # Never backwards, or a slower clock would hand out its lag again as refill.
            updated_us=case(
                (QuotaBucketRow.updated_us < now_us, literal(now_us)),
                else_=QuotaBucketRow.updated_us,
            ),
        )
        .returning(QuotaBucketRow.tokens)
    ).scalar_one_or_none()
    return None if left is None else float(left)


def _level(
    session: Session, principal_pk: int, now_us: int, rate: float, burst: float
) -> float | None:
    row = session.get(QuotaBucketRow, principal_pk)
    if row is None:
        return None
    elapsed = max(0, now_us - row.updated_us)
    return min(burst, row.tokens + elapsed * rate / 1_000_000)


def take(
    session: Session,
    principal_pk: int,
    n: int,
    *,
    now_us: int,
    day: int,
    rate: float,
    burst: float,
    daily_cap: int,
) -> Taken:
    """Spend n units of today's cap and of the bucket, or neither. The caller MUST raise
    (rolling the transaction back) when `granted` is False."""
    used = session.execute(
        update(UsageRow)
        .where(
            UsageRow.principal_pk == principal_pk,
            UsageRow.day == day,
            UsageRow.tokens_evaluated + n <= daily_cap,
        )
        .values(tokens_evaluated=UsageRow.tokens_evaluated + n)
        .returning(UsageRow.tokens_evaluated)
    ).scalar_one_or_none()
    if used is None:
        row = session.get(UsageRow, (principal_pk, day))
        if row is not None or n > daily_cap:
            return Taken(
                False,
                _level(session, principal_pk, now_us, rate, burst) or 0.0,
                row.tokens_evaluated if row else 0,
            )
        # First use today; a racing first insert fails on the key and the unit is retried.
        session.add(
            UsageRow(principal_pk=principal_pk, day=day, tokens_evaluated=n, reassigned_checks=0)
        )
        session.flush()
        used = n
    left = _bucket(session, principal_pk, n, now_us, rate, burst)
    if left is None:
        level = _level(session, principal_pk, now_us, rate, burst)
        if level is not None:
            return Taken(False, level, int(used) - n)
        # A new bucket starts full.
        session.add(QuotaBucketRow(principal_pk=principal_pk, tokens=burst - n, updated_us=now_us))
        session.flush()
        left = burst - n
    return Taken(True, left, int(used))


def refund(session: Session, principal_pk: int, n: int, *, day: int, burst: float) -> None:
    """Give back n units taken for work that was then refused."""
    session.execute(
        update(QuotaBucketRow)
        .where(QuotaBucketRow.principal_pk == principal_pk)
        .values(
            tokens=case(
                (QuotaBucketRow.tokens + n > burst, literal(burst)),
                else_=QuotaBucketRow.tokens + n,
            )
        )
    )
    session.execute(
        update(UsageRow)
        .where(
            UsageRow.principal_pk == principal_pk,
            UsageRow.day == day,
            UsageRow.tokens_evaluated >= n,
        )
        .values(tokens_evaluated=UsageRow.tokens_evaluated - n)
    )
