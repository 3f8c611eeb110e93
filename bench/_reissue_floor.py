"""bench/reissue.py's SQLite floor: raw orders INSERTs on a copy of the store, and the
registry's own storage calls for the same orders on a second copy."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numbind.registry.domain.types import (
    AckOutcome,
    BindingState,
    EventCause,
    EventKind,
    OrderState,
)

from bench._loop_floor import (
    LEAF_COLUMNS,
    NODE_COLUMNS,
    ORDER_COLUMNS,
    PART_BASE,
    LoopFloor,
    LoopRows,
    Phases,
    all_rows,
)
from bench._reissue_plan import CAUSE, now_us


# -- the floor --------------------------------------------------------------------------------
def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL database (the online backup API)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def raw_floor(db: Path, tokens: list[bytes]) -> tuple[int, float]:
    """One transaction of plain executemany INSERTs: an orders row (feed place included)
    per order."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        targets = _live_bindings(conn, tokens)
        # Made-up keys at base 0, the loop floor's (run next on this copy) above them.
        rows = _rows(conn, targets, 0)
        orders = rows.orders()
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        _revocation(conn, rows)
        _insert(conn, "orders", ORDER_COLUMNS, orders)
        conn.execute("COMMIT")
        return len(orders), time.perf_counter() - start
    finally:
        conn.close()


def _live_bindings(conn: sqlite3.Connection, tokens: list[bytes]) -> list[tuple[int, int, bytes]]:
    out: list[tuple[int, int, bytes]] = []
    for i in range(0, len(tokens), 500):
        chunk = tokens[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        out += conn.execute(
            f"SELECT pk, platform_pk, token FROM bindings WHERE token IN ({marks}) AND state = ?",
            (*chunk, int(BindingState.ACTIVE)),
        ).fetchall()
    return out


def loop_floor(db: Path, tokens: list[bytes]) -> LoopFloor:
    """`loop_floor_in` on a copy of the store, in one transaction rolled back: after
    `raw_floor` on the same copy, whose orders leave the bindings alone (its made-up keys sit
    below this one's)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN IMMEDIATE")
        floor = loop_floor_in(conn, tokens)
        conn.execute("ROLLBACK")
        return floor
    finally:
        conn.close()


def loop_floor_in(conn: sqlite3.Connection, tokens: list[bytes]) -> LoopFloor:
    """The loop's rows (bench._loop_floor) for the live bindings of `tokens`, written the
    fastest plain way sqlite3 has (executemany), in the caller's transaction."""
    phases = Phases()
    targets = _live_bindings(conn, tokens)
    phases.done("live bindings read")
    rows = _rows(conn, targets, PART_BASE)  # the raw floor's keys, on the same copy, at 0
    _revocation(conn, rows)
    _insert(conn, "orders", ORDER_COLUMNS, rows.orders())
    phases.done("orders INSERT")
    want = len(targets)

    def update(sql: str, params: list[tuple[Any, ...]], what: str) -> None:
        all_rows(conn.executemany(sql, params).rowcount, want, what)
        phases.done(what)

    set_binding = "UPDATE bindings SET state = ? WHERE pk = ?"
    revoking = [(int(BindingState.REVOKING), pk) for pk in rows.binding_keys[0]]
    update(set_binding, revoking, "bindings REVOKING")
    _insert(conn, "log_leaves", LEAF_COLUMNS, rows.leaves("order"))
    _insert(conn, "log_nodes", NODE_COLUMNS, rows.nodes("order"))
    phases.done("order leaves + nodes INSERT")
    update(
        "UPDATE orders SET state = ?, outcome = ?, acked_us = ? WHERE pk = ?",
        [(int(OrderState.DONE), int(AckOutcome.UNBOUND), rows.now, pk) for pk in rows.pks],
        "orders acked (DONE)",
    )
    revoked = [(int(BindingState.REVOKED), pk) for pk in rows.binding_keys[0]]
    update(set_binding, revoked, "bindings REVOKED")
    _insert(conn, "log_leaves", LEAF_COLUMNS, rows.leaves("ack"))
    _insert(conn, "log_nodes", NODE_COLUMNS, rows.nodes("ack"))
    phases.done("ack leaves + nodes INSERT")
    return LoopFloor(len(targets), tuple(phases.spans))


def _rows(conn: sqlite3.Connection, targets: list[tuple[int, int, bytes]], base: int) -> LoopRows:
    (next_pk,) = conn.execute("SELECT COALESCE(MAX(pk), 0) + 1 FROM orders").fetchone()
    return LoopRows(targets, next_pk, base)


def _revocation(conn: sqlite3.Connection, rows: LoopRows) -> None:
    # A federation member knows no carrier (they report to the hub): any principal will do
    # for the row's foreign key.
    carrier_pk = conn.execute(
        "SELECT pk FROM principals ORDER BY role = 'carrier' DESC, pk LIMIT 1"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO revocations (id, cause, carrier_pk, scope, created_us) VALUES (?, ?, ?, 0, ?)",
        (rows.revocation_id, CAUSE, carrier_pk, rows.now),
    )


def _insert(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


@dataclass(frozen=True)
class AppendTimes:
    orders: int
    lookup_s: float  # bindings.live_for_tokens for the reissued tokens
    append_s: float  # orders.new_revocation + orders.append
    commit_s: float


def registry_append(db: Path, tokens: list[bytes]) -> AppendTimes:
    """The registry's storage calls for the same orders on a copy, in one transaction as in
    ReportLifecycle (without its number-state and audit-log writes)."""
    from numbind.registry.storage import orders
    from numbind.registry.storage.bindings import live_for_tokens
    from numbind.registry.storage.db import Database

    with sqlite3.connect(db) as conn:
        carrier_pk = conn.execute("SELECT pk FROM principals WHERE role = 'carrier'").fetchone()[0]
    conn.close()
    database = Database(f"sqlite:///{db}")
    try:

        def act(session: Any) -> tuple[int, float, float]:
            t0 = time.perf_counter()
            live = live_for_tokens(session, tokens)
            new = [
                orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, now_us())
                for bs in live.values()
                for b in bs
            ]
            t1 = time.perf_counter()
            rid = orders.new_revocation(session, EventCause.REISSUED, carrier_pk)
            orders.append(session, rid, new, 86_400)
            return len(new), t1 - t0, time.perf_counter() - t1

        start = time.perf_counter()
        n, lookup, append = database.transact(act)
        return AppendTimes(n, lookup, append, time.perf_counter() - start - lookup - append)
    finally:
        database.close()
