"""On PostgreSQL a stream's feed read is planned for the tables as they are when it runs
(storage.db.custom_plans): a generic plan cached while `orders` and `feed_events` were
nearly empty kept scanning them whole once a reissue had filled them. Other statements keep
their prepared, generic plans (planning each cost a holder query 1-2 ms at p50)."""

from __future__ import annotations

from numbind.registry.domain.types import EventCause, EventKind
from numbind.registry.storage import feed, orders, principals
from numbind.registry.storage.db import Database
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.storage.test_feed_store import _binding

# psycopg prepares a statement at its 5th run on a connection; PostgreSQL then plans the
# first 5 runs of the prepared statement for their parameters and may switch to a generic
# plan from the 6th. 15 runs are past both.
RUNS = 15


def test_a_feed_read_run_many_times_is_never_planned_generically(db: Database) -> None:
    if db.write_engine.dialect.name != "postgresql":
        return  # SQLite has no plan cache across statements to go stale
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cp").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "pp").pk)
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(4)])

    def append(s: Session) -> None:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in stored]
        orders.append(s, rid, new, 60.0)

    db.transact(append)

    def reads(s: Session) -> list[tuple[str, int]]:
        for _ in range(RUNS):
            assert len(feed.read_feed(s, plat, 0, 10)) == len(stored)
        generic = "SELECT statement, generic_plans FROM pg_prepared_statements"
        rows = s.execute(
            text(generic + " WHERE generic_plans > 0 AND statement LIKE '%feed_events%'")
        )
        return [(str(q), int(g)) for q, g in rows]

    assert db.transact(reads, write=False) == []


def test_other_statements_keep_their_generic_plans(db: Database) -> None:
    if db.write_engine.dialect.name != "postgresql":
        return
    pks = db.transact(lambda s: [principals.register(s, "platform", n).pk for n in "abc"])

    def reads(s: Session) -> int:
        for _ in range(RUNS):
            assert len(principals.names_by_pks(s, set(pks))) == len(pks)
        generic = "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements"
        return int(s.execute(text(generic)).scalar_one())

    assert db.transact(reads, write=False) > 0
