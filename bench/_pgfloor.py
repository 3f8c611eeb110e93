"""PostgreSQL plumbing for the benches: reach a database, reset it, and the reissue bench's
floors measured on a live PostgreSQL store.

The reissue floors on SQLite run on copies of the store file; a PostgreSQL store is not
copied, so each floor runs on the live store after the window (bench.reissue: for numbers the
batch left alone), in a transaction that is rolled back: the rows are written (heap, indexes,
WAL) but not committed, so the figure leaves out one commit's flush (milliseconds).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from numbind.registry.domain.types import (
    AckOutcome,
    BindingState,
    EventCause,
    EventKind,
    OrderState,
)
from numbind.registry.storage.pgcopy import copy_rows
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.orm import Session

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
from bench._reissue_floor import AppendTimes
from bench._reissue_plan import now_us


def reachable(url: str) -> str | None:
    """None if the database answers, else why not (one line). A server that answers but
    has no such database gets it created (empty; each bench run rebuilds its schema), so
    `make bench` on a new machine needs no `createdb` first."""
    why = _answers(url)
    if why is not None and "does not exist" in why:
        why = _create_database(url) or _answers(url)
    return why


def _answers(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure to connect is a reason to skip
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def _create_database(url: str) -> str | None:
    """CREATE DATABASE for `url`'s database, from the server's `postgres` database; None
    if done, else why not."""
    target = make_url(url)
    name = target.database or ""
    engine = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
        print(f"  created the bench database {name}")
        return None
    except Exception as exc:  # no right to create it: the caller skips, saying why
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def reset_schema(url: str) -> None:
    """An empty public schema: the bench's database starts from nothing each run."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _live(cur: Any, tokens: list[bytes]) -> list[tuple[int, int, bytes]]:
    """(pk, platform pk, token) of the live bindings of `tokens`."""
    cur.execute(
        "SELECT b.pk, b.platform_pk, b.token FROM unnest(%s::bytea[]) AS t(token)"
        " JOIN bindings b ON b.token = t.token WHERE b.state = 1",
        (tokens,),
    )
    return list(cur.fetchall())


def _start(cur: Any, targets: list[tuple[int, int, bytes]], base: int) -> LoopRows:
    """The rows for `targets`, and their revocation inserted."""
    cur.execute("SELECT pk FROM principals WHERE role = 'carrier'")
    (carrier_pk,) = cur.fetchone()
    cur.execute("SELECT nextval('orders_pk_seq')")
    rows = LoopRows(targets, cur.fetchone()[0] + 1, base)
    cur.execute(
        "INSERT INTO revocations (id, cause, carrier_pk, scope, created_us)"
        " VALUES (%s, %s, %s, 0, %s)",
        (rows.revocation_id, int(EventCause.REISSUED), carrier_pk, rows.now),
    )
    return rows


def _cursor(conn: Connection) -> Any:
    """A psycopg cursor in `conn`'s transaction, for the statements beside the COPYs."""
    dbapi: Any = conn.connection.driver_connection
    return dbapi.cursor()


def raw_floor(conn: Connection, tokens: list[bytes]) -> tuple[int, float]:
    """COPY of one orders row per live binding of `tokens`, its feed place included (the
    outbox's irreducible write, the fastest way PostgreSQL takes rows), in the caller's
    transaction. The figures of earlier stops came from executemany INSERTs, at about a
    fifth of COPY's rate (storage.pgcopy): not a floor of what the registry does."""
    cur = _cursor(conn)
    rows = _start(cur, _live(cur, tokens), 0)
    orders = rows.orders()
    start = time.perf_counter()
    copy_rows(conn, "orders", ORDER_COLUMNS, orders)
    return len(orders), time.perf_counter() - start


# -- the whole loop's floor (bench._loop_floor) -------------------------------------------------
def loop_floor(conn: Connection, tokens: list[bytes], base: int = 0) -> LoopFloor:
    """The loop's rows (bench._loop_floor) for the live bindings of `tokens`, written the
    fastest plain way PostgreSQL has, in the caller's transaction: COPY for the inserts, one
    `UPDATE ... FROM unnest` of (pk, token) pairs for each kind of update."""
    cur = _cursor(conn)
    phases = Phases()
    targets = _live(cur, tokens)
    phases.done("live bindings read")
    rows = _start(cur, targets, base)
    copy_rows(conn, "orders", ORDER_COLUMNS, rows.orders())
    phases.done("orders COPY")
    want = len(targets)

    def update(sql: str, params: tuple[Any, ...], what: str) -> None:
        cur.execute(sql, params)
        all_rows(cur.rowcount, want, what)
        phases.done(what)

    set_bindings = (
        "UPDATE bindings AS b SET state = %s FROM unnest(%s::bigint[], %s::bytea[])"
        " AS v(pk, token) WHERE b.pk = v.pk AND b.token = v.token"
    )
    update(set_bindings, (int(BindingState.REVOKING), *rows.binding_keys), "bindings REVOKING")
    copy_rows(conn, "log_leaves", LEAF_COLUMNS, rows.leaves("order"))
    copy_rows(conn, "log_nodes", NODE_COLUMNS, rows.nodes("order"))
    phases.done("order leaves + nodes COPY")
    update(
        "UPDATE orders AS o SET state = %s, outcome = %s, acked_us = %s"
        " FROM unnest(%s::bigint[], %s::bytea[]) AS v(pk, token)"
        " WHERE o.pk = v.pk AND o.token = v.token",
        (int(OrderState.DONE), int(AckOutcome.UNBOUND), rows.now, rows.pks, rows.binding_keys[1]),
        "orders acked (DONE)",
    )
    update(set_bindings, (int(BindingState.REVOKED), *rows.binding_keys), "bindings REVOKED")
    copy_rows(conn, "log_leaves", LEAF_COLUMNS, rows.leaves("ack"))
    copy_rows(conn, "log_nodes", NODE_COLUMNS, rows.nodes("ack"))
    phases.done("ack leaves + nodes COPY")
    return LoopFloor(len(targets), tuple(phases.spans))


def parallel_loop_floor(url: str, tokens: list[bytes], connections: int) -> float:
    """Wall seconds of `loop_floor` split over `connections` at once, a share of the tokens
    each (the registry writes over several connections too), each rolled back."""
    from concurrent.futures import ThreadPoolExecutor

    engine = create_engine(url, pool_size=connections)
    share = -(-len(tokens) // connections)

    def part(i: int) -> None:
        with engine.connect() as conn:
            loop_floor(conn, tokens[i * share : (i + 1) * share], i * PART_BASE)
            conn.rollback()

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=connections) as pool:
            list(pool.map(part, range(connections)))
        return time.perf_counter() - start
    finally:
        engine.dispose()


PgFloors = tuple[tuple[int, float], AppendTimes, LoopFloor]


def floors(url: str, tokens: list[bytes]) -> PgFloors:
    """The raw floor, the whole loop's floor, then the registry's own storage calls for the
    same orders (bindings.live_for_tokens + orders.append), each rolled back."""
    from numbind.registry.storage import orders
    from numbind.registry.storage.bindings import live_for_tokens

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            raw = raw_floor(conn, tokens)
            conn.rollback()
        with engine.connect() as conn:
            loop = loop_floor(conn, tokens)
            conn.rollback()
        cores = os.cpu_count() or 2
        loop = replace(loop, connections=cores, parallel_s=parallel_loop_floor(url, tokens, cores))
        with engine.connect() as conn:
            carrier_pk = conn.execute(
                text("SELECT pk FROM principals WHERE role = 'carrier'")
            ).scalar_one()
            session = Session(bind=conn)
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
            t2 = time.perf_counter()
            session.rollback()
            session.close()
        return raw, AppendTimes(len(new), t1 - t0, t2 - t1, 0.0), loop
    finally:
        engine.dispose()
