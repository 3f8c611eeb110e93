"""`orders.append`'s `meanwhile`: the caller's own work (the local applier builds the
orders' log leaves there) runs once the order rows are sent and, on PostgreSQL, before the
COPY that writes them is finished, so it runs beside the server's insert rather than after
it. It sees every order it is about to log, and if it fails nothing of the append stays."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from numbind.registry.domain.types import EventCause, EventKind
from numbind.registry.storage import feed, orders, principals
from numbind.registry.storage.db import Database
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.storage.test_feed_store import _binding

ORDERS = 30


def _setup(db: Database) -> tuple[int, int, list[Any]]:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cu").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "pu").pk)
    mine = db.transact(lambda s: [_binding(s, plat, i) for i in range(ORDERS)])
    return carrier, plat, mine


def _new(mine: list[Any]) -> list[orders.NewOrder]:
    return [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in mine]


def test_meanwhile_sees_every_created_order_once(db: Database) -> None:
    carrier, plat, mine = _setup(db)
    seen: list[list[str]] = []

    def append(s: Session) -> list[str]:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        created: list[tuple[str, orders.NewOrder]] = []
        orders.append(
            s,
            rid,
            _new(mine),
            60.0,
            created=created,
            meanwhile=lambda: seen.append([oid for oid, _ in created]),
        )
        return [oid for oid, _ in created]

    ids = db.transact(append)
    assert len(seen) == 1
    assert seen[0] == ids and len(ids) == ORDERS
    items = db.transact(lambda s: feed.read_feed(s, plat, 0, ORDERS + 1), write=False)
    assert sorted(i.order_id for i in items) == sorted(ids)


def test_meanwhile_runs_while_the_orders_copy_is_open(pg_db: Database) -> None:
    """From a second connection, at the moment `meanwhile` runs, the appender's backend
    is still executing `COPY orders`: the caller's work overlaps the server's."""
    carrier, _, mine = _setup(pg_db)
    url = pg_db.write_engine.url.set(drivername="postgresql")
    seen: list[tuple[str, str]] = []

    def append(s: Session) -> None:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)

        def look() -> None:
            with psycopg.connect(url.render_as_string(hide_password=False)) as other:
                row = other.execute(
                    "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                assert row is not None
                seen.append((str(row[0]), str(row[1])))

        orders.append(s, rid, _new(mine), 60.0, meanwhile=look)

    pg_db.transact(append)
    assert len(seen) == 1
    state, query = seen[0]
    assert state == "active"
    assert query.startswith("COPY orders ")


def test_a_failing_meanwhile_leaves_nothing(db: Database) -> None:
    carrier, plat, mine = _setup(db)

    def boom() -> None:
        raise RuntimeError("leaves could not be built")

    def append(s: Session) -> None:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        orders.append(s, rid, _new(mine), 60.0, meanwhile=boom)

    with pytest.raises(RuntimeError, match="leaves could not be built"):
        db.transact(append)

    def counts(s: Session) -> tuple[int, int, int]:
        head = s.execute(text("SELECT feed_head FROM principals WHERE pk = :p"), {"p": plat})
        return (
            s.execute(text("SELECT count(*) FROM orders")).scalar_one(),
            s.execute(text("SELECT count(*) FROM revocations")).scalar_one(),
            head.scalar_one(),
        )

    assert db.transact(counts, write=False) == (0, 0, 0)
    # The store is usable after the abandoned COPY: the same append without the failure.
    db.transact(
        lambda s: orders.append(
            s, orders.new_revocation(s, EventCause.REISSUED, carrier), _new(mine), 60.0
        )
    )
    assert db.transact(counts, write=False) == (ORDERS, 1, ORDERS)
