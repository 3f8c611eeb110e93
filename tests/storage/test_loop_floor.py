"""bench/reissue's whole-loop floor, on SQLite and PostgreSQL: it must do every write it is
timed for (a floor that skipped rows would flatter the ratio), and leave the store as it
found it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from numbind.registry.domain.types import AckOutcome, BindingState, OrderState
from numbind.registry.storage import migrate, principals
from numbind.registry.storage.db import Database
from sqlalchemy import Connection, text

from bench import _reissue_floor
from bench._loop_floor import NODE_EVERY, PART_BASE
from bench._pgfloor import loop_floor, parallel_loop_floor, raw_floor
from tests.storage.test_feed_store import _binding

_COUNTS = {
    "orders": "SELECT count(*) FROM orders WHERE state = :done AND outcome = :unbound",
    # Feed places: unique per platform (ux_orders_feed), so a count of distinct pairs.
    "feed places": "SELECT count(*) FROM (SELECT DISTINCT platform_pk, feed_seq FROM orders) f",
    "revoked bindings": "SELECT count(*) FROM bindings WHERE state = :revoked",
    "active bindings": "SELECT count(*) FROM bindings WHERE state = :active",
    "order leaves": "SELECT count(*) FROM log_leaves WHERE kind = 'order'",
    "ack leaves": "SELECT count(*) FROM log_leaves WHERE kind = 'ack'",
    "nodes": "SELECT count(*) FROM log_nodes",
}
_STATES = {
    "done": int(OrderState.DONE),
    "unbound": int(AckOutcome.UNBOUND),
    "revoked": int(BindingState.REVOKED),
    "active": int(BindingState.ACTIVE),
}


def _store(db: Database, count: int) -> list[bytes]:
    """A carrier, two platforms with `count` active bindings between them; their tokens."""
    db.transact(lambda s: principals.register(s, "carrier", "c-floor"))
    plats = db.transact(
        lambda s: [principals.register(s, "platform", f"p-floor-{i}").pk for i in range(2)]
    )
    stored = db.transact(lambda s: [_binding(s, plats[i % 2], i) for i in range(count)])
    return [b.binding.token.value for b in stored]


def _sqlite_store(tmp_path: Path, count: int) -> tuple[Path, list[bytes]]:
    """`_store` in a new SQLite file, closed again: the bench's floors open it themselves."""
    path = tmp_path / "store.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db.write_engine)
    tokens = _store(db, count)
    db.close()
    return path, tokens


def _counts(conn: Connection) -> dict[str, int]:
    return {name: conn.execute(text(sql), _STATES).scalar_one() for name, sql in _COUNTS.items()}


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: conn.execute(sql, _STATES).fetchone()[0] for name, sql in _COUNTS.items()}


_PHASES = [
    "live bindings read",
    "orders {}",
    "bindings REVOKING",
    "order leaves + nodes {}",
    "orders acked (DONE)",
    "bindings REVOKED",
    "ack leaves + nodes {}",
]
# What the floor writes for 20 of 30 bindings (at two platforms).
_DURING = {
    "orders": 20,
    "feed places": 20,
    "revoked bindings": 20,
    "active bindings": 10,
    "order leaves": 20,
    "ack leaves": 20,
    # One per 8 leaves of each kind, as the registry stores them (from 16-leaf subtrees up).
    "nodes": 2 * len(range(0, 20, NODE_EVERY)),
}


def test_the_loop_floor_writes_every_row_of_the_loop_then_rolls_back(pg_db: Database) -> None:
    tokens = _store(pg_db, 30)
    with pg_db.write_engine.connect() as conn:
        before = _counts(conn)
        floor = loop_floor(conn, tokens[:20])
        during = _counts(conn)
        conn.rollback()
        after = _counts(conn)
    assert floor.orders == 20
    assert [name for name, _ in floor.phases] == [p.format("COPY") for p in _PHASES]
    assert all(s > 0 for _, s in floor.phases)  # each phase timed (total_s is their sum)
    assert during == _DURING
    assert before == after
    assert after["active bindings"] == 30 and after["orders"] == 0


def test_the_sqlite_loop_floor_writes_every_row_of_the_loop_then_rolls_back(
    tmp_path: Path,
) -> None:
    path, tokens = _sqlite_store(tmp_path, 30)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        before = _sqlite_counts(conn)
        conn.execute("BEGIN IMMEDIATE")
        floor = _reissue_floor.loop_floor_in(conn, tokens[:20])
        during = _sqlite_counts(conn)
        conn.execute("ROLLBACK")
        # The bench's own entry point: its transaction, rolled back.
        again = _reissue_floor.loop_floor(path, tokens[:20])
        after = _sqlite_counts(conn)
    finally:
        conn.close()
    assert floor.orders == again.orders == 20
    assert [name for name, _ in floor.phases] == [p.format("INSERT") for p in _PHASES]
    assert during == _DURING
    assert before == after
    assert after["active bindings"] == 30 and after["orders"] == 0


def test_the_parallel_floors_parts_make_up_no_common_key(pg_db: Database) -> None:
    """Its connections run at once, each on a share of the tokens: a key two of them made
    up alike (a log leaf's index, say) would make one wait on the other's uncommitted row,
    and the two would run one after the other. Here the second waits at most a second."""
    tokens = _store(pg_db, 30)
    with pg_db.write_engine.connect() as first, pg_db.write_engine.connect() as second:
        loop_floor(first, tokens[:15], 0)
        second.execute(text("SET lock_timeout = '1s'"))
        floor = loop_floor(second, tokens[15:], PART_BASE)
        assert floor.orders == 15
        assert _counts(second)["ack leaves"] == 15  # its own only: the first's is uncommitted
        second.rollback()
        first.rollback()


def test_the_parallel_floor_runs_and_keeps_nothing(pg_db: Database) -> None:
    tokens = _store(pg_db, 31)
    url = pg_db.write_engine.url.render_as_string(hide_password=False)
    assert parallel_loop_floor(url, tokens, 2) > 0
    with pg_db.write_engine.connect() as conn:
        counts = _counts(conn)
    assert counts["active bindings"] == 31 and counts["orders"] == 0 and counts["nodes"] == 0


def test_the_raw_floor_copies_an_order_with_its_feed_place_per_live_binding(
    pg_db: Database,
) -> None:
    tokens = _store(pg_db, 30)
    with pg_db.write_engine.connect() as conn:
        n, seconds = raw_floor(conn, tokens[:12])
        orders = conn.execute(text("SELECT count(*) FROM orders")).scalar_one()
        feed = conn.execute(text(_COUNTS["feed places"])).scalar_one()
        conn.rollback()
    assert n == orders == feed == 12 and seconds > 0


def test_the_sqlite_raw_floor_inserts_an_order_with_its_feed_place_per_live_binding(
    tmp_path: Path,
) -> None:
    """It commits: the bench runs it on a copy of the store."""
    path, tokens = _sqlite_store(tmp_path, 30)
    n, seconds = _reissue_floor.raw_floor(path, tokens[:12])
    conn = sqlite3.connect(path)
    try:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        feed = conn.execute(_COUNTS["feed places"]).fetchone()[0]
    finally:
        conn.close()
    assert n == orders == feed == 12 and seconds > 0
    # The loop floor runs next on the same copy: its made-up keys do not clash.
    assert _reissue_floor.loop_floor(path, tokens[:12]).orders == 12


def test_the_sqlite_loop_floor_runs_on_a_member_store_that_knows_no_carrier(
    tmp_path: Path,
) -> None:
    """A federation member's carriers report to the hub, so its store has none; the floor's
    revocation row takes another principal for its foreign key (bench.federation)."""
    path = tmp_path / "member.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db.write_engine)
    plat = db.transact(lambda s: principals.register(s, "platform", "p-member").pk)
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(8)])
    db.close()
    floor = _reissue_floor.loop_floor(path, [b.binding.token.value for b in stored])
    assert floor.orders == 8


def test_the_federation_floors_copy_only_the_stores_that_hold_bindings(tmp_path: Path) -> None:
    """bench.federation's floors, after the window: each member's store is copied and
    floored; the hub, which holds no bindings in a federation, is not even opened (its
    store here does not exist). A single registry is the hub alone, and is floored."""
    from bench.federation import loop_floors

    member, tokens = _sqlite_store(tmp_path, 16)
    net = tmp_path / "net"
    net.mkdir()
    member.rename(net / "registry.db")
    servers: Any = {
        "hub": SimpleNamespace(data=tmp_path / "no-hub"),
        "net": SimpleNamespace(data=net),
    }
    assert list(loop_floors(servers, tokens[:10])) == ["net"]
    alone: Any = {"hub": SimpleNamespace(data=net)}
    assert list(loop_floors(alone, tokens[:10])) == ["hub"]
    # Copies: the member's own store is left as it was.
    conn = sqlite3.connect(net / "registry.db")
    try:
        assert _sqlite_counts(conn)["active bindings"] == 16
    finally:
        conn.close()


def test_the_benches_refuse_too_few_numbers_for_their_floors_after_the_window() -> None:
    """The floors run after the window on as many numbers the batch left alone: a size
    that leaves fewer is refused before anything starts (no database is reached here)."""
    from bench import federation, reissue

    with pytest.raises(SystemExit) as fed:
        federation.main(["--bindings", "1000", "--reissued", "60"])
    with pytest.raises(SystemExit) as pg:
        reissue.main(
            ["--bindings", "100000", "--reissued", "6000", "--database-url", "postgresql://x"]
        )
    assert fed.value.code == pg.value.code == 2


def test_the_untouched_numbers_are_as_many_as_the_reissued_and_none_of_them() -> None:
    """Plan.untouched, where both benches' floors run after the window."""
    from bench._reissue_plan import Plan

    plan = Plan.make(400, 20, 5)  # 40 numbers
    assert len(plan.untouched) == 20
    assert not set(plan.untouched) & set(plan.tokens[:20])
    with pytest.raises(ValueError):
        _ = Plan.make(390, 20, 5).untouched  # 39 numbers: 19 left alone
