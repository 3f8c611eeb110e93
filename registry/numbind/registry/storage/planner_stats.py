"""PostgreSQL: the planner's statistics of tables that grew or changed faster than
autovacuum looks (every `autovacuum_naptime`, a minute by default): which are stale, and
ANALYZE of them.

Why: a reissue grows `orders` from nearly empty to 100,000 rows in under a
minute, and flips their states twice. Planned on statistics that said empty, the feed read's
generic plan (storage.pg_session.index_plans) probed each `orders` partition through its
`(id, token)` key on the token alone, which walks the partition's whole index, and kept
that plan as the partitions grew (a pg_stat_statements run: 37.6 s in 507 reads of 100,000
rows). The delivery marks, planned per call on a stale share of open orders, hashed every
open order of every partition for each page of 500 (21.5 s for 100,000 marks), through an
index on `state` that migration 0011_open_orders dropped. Both plans were right as soon as
the statistics were.

A table is stale here when the rows inserted, updated or deleted since its last ANALYZE
reach its size then (and at least `floor`): the statistics are then at most about half
wrong, and a table of any size is analyzed O(log n) times as it grows. Autovacuum's own
threshold (50 rows + 10 %) stays as it is for the slow changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

# One key for every process on the database: one of them analyzes at a time.
_LOCK_KEY = 0x6E756D62696E6401  # "numbind" + 1

_STALE = text(
    "SELECT format('%I.%I', s.schemaname, s.relname) FROM pg_stat_user_tables s"
    " JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema() AND c.relkind = 'r'"
    " AND s.n_mod_since_analyze >= greatest(:floor, c.reltuples)"
    # Only tables this role may analyze (it owns them, or is a member of their owner):
    # for any other, ANALYZE only warns, and the table would stay stale and be tried again
    # every round.
    " AND pg_has_role(c.relowner, 'USAGE')"
    " ORDER BY s.n_mod_since_analyze DESC"
)


def stale(session: Session, floor: int) -> list[str]:
    """Tables (schema-qualified, quoted) of this schema whose statistics are stale, most
    changed first."""
    return [str(name) for name in session.execute(_STALE, {"floor": floor}).scalars()]


def claim(session: Session) -> bool:
    """This transaction is the one analyzing now (False: another process's is)."""
    got = session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    return bool(got.scalar_one())


# The keeper's sample: 300 x this many rows a table. Its ANALYZE is for row counts that
# grew tenfold under a burst, not for fine histograms (autovacuum's keeps the server's
# target). At the default 100 its rounds took 3.3-6.1 s of PostgreSQL's time in a
# full-size reissue (seven runs); one ANALYZE of log_leaves at 117,000 rows 236-869 ms,
# at 10 18-21 ms.
STATISTICS_TARGET = 10


def analyze(session: Session, tables: Sequence[str]) -> None:
    """ANALYZE `tables` (names as `stale` gives them) on a sample of 300 x STATISTICS_TARGET
    rows each, skipping any whose lock another maintenance command holds (autovacuum, a
    migration): the next round takes it."""
    if tables:
        session.execute(
            text("SELECT set_config('default_statistics_target', :t, true)"),
            {"t": str(STATISTICS_TARGET)},
        )
        session.execute(text(f"ANALYZE (SKIP_LOCKED) {', '.join(tables)}"))
