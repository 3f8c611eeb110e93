"""PostgreSQL: the reissue path's bulk statements, one statement per batch (storage.orders,
storage.feed, storage.numbers call these on PostgreSQL; SQLite keeps its executemany).

On PostgreSQL an executemany is still one statement per row (a round trip, parse, plan and
executor start-up each: ~134 us a row measured on the reissue bench), and a statement on a
hash-partitioned table that does not name the token probes every partition. Here each batch
is one statement over `unnest` of arrays, joined on (pk, token) so each row routes to its
own partition. The writes by (pk, token) return the pks they touched: a row a concurrent
re-key moved to its new token since the caller read it (or one no longer in the state the
write expects) is missed there, and the caller writes those few by pk alone, again in one
statement (`*_by_pk`: without the token, each pk probes every partition). Orders are
inserted with COPY (storage.pgcopy) on pks drawn here first (`next_pks`); their later writes
(delivery marks, acks) are in storage.pgorder_sets.

The joined arrays are passed as `unnest((SELECT %b::bigint[]), ...)`: a bare array
parameter tells the planner its length, and from a few hundred rows on it then hashes the
whole partitioned table (a sequential scan of every partition: 456 ms for 500 acks at 1M
bindings); behind a sub-select it plans the nested loop whose index probes each prune to
one partition at run time (6.5 ms for the same 500). Each array goes in binary (`%b`):
psycopg writes a bytea array as text by escaping every element in Python, holding the GIL
(5,000 tokens: 33.6 ms, against 1.2 ms in binary; a reissue passes about 550,000 tokens
through these statements), and the server then parses each element's hex back.

Portability (README's table of what the PostgreSQL path uses): Citus runs a join of
`unnest` to a distributed table only through a repartition; there the row-by-row
statements (the SQLite branch's), which name the token, route each row to its shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from numbind.registry.storage.db import StaleRead, marks
from sqlalchemy import Connection

__all__ = [
    "any_of",
    "bump_feed_heads",
    "events_of_revocation",
    "live_bindings",
    "lock_bindings",
    "next_pks",
    "numbers_of",
    "set_binding_states",
    "set_binding_states_by_pk",
    "set_bindings_state",
    "unnest_params",
    "update_numbers",
]


# Up to this many values a lookup names each in an `IN` list instead: the planner then prunes
# to the partitions of those values (a holder query's one number and its bindings). Behind
# an array, with a small table's statistics, it hashed a sequential scan of every partition
# (one number of 10,500: 6.6 ms at p50, against 0.22 ms by `IN`; its live bindings among
# 1 M: 1.9 ms against 0.30 ms), and a holder query made three such lookups.
FEW = 16


def unnest_params(*types: str) -> str:
    """unnest of array parameters of these element types, each behind a sub-select (above)."""
    return "unnest(" + ", ".join(f"(SELECT %b::{t}[])" for t in types) + ")"


def any_of(
    conn: Connection, column: str, values: Sequence[Any], element: str
) -> tuple[str, tuple[Any, ...]]:
    """`column` is any of `values`, as a driver-SQL fragment (`?` marks, or PostgreSQL's one
    binary array: wrap the statement in `db.driver_sql`) and its parameters. SQLite:
    `column IN (?, ...)`. PostgreSQL: `column = any(...)` of one array of `element` (an SQL
    type name) behind a sub-select, so the planner probes each partition's index instead of
    scanning every partition (500 order ids at 100,000 orders: ~28 ms against ~150 ms in
    EXPLAIN ANALYZE), and instead of planning an IN list of 500 parameters per partition.
    Up to `FEW` values it is that `IN` list, which prunes to their partitions. The array is
    for values that are not the partition key (order ids); many tokens are joined
    as their `unnest` instead (`live_bindings`, `events_of_revocation`, `numbers_of`), where
    each probe prunes to one partition: the array probed every partition with every token
    (1,000 tokens' live bindings at 1 M bindings: 68-73 ms in two statements, against
    34-43 ms joined)."""
    if conn.dialect.name != "postgresql":
        return f"{column} IN ({marks(len(values))})", tuple(values)
    if len(values) <= FEW:
        return f"{column} IN ({', '.join(['%b'] * len(values))})", tuple(values)
    return f"{column} = any(CAST((SELECT %b::{element}[]) AS {element}[]))", (list(values),)


def live_bindings(conn: Connection, tokens: Sequence[bytes], live: Sequence[int]) -> list[Any]:
    """Rows (token, pk, platform_pk, key_id, account_ref, bound_us, kind, state) of the
    bindings in states `live` to any of `tokens` (more than `FEW` of them), in one statement:
    a join of the tokens' `unnest`, whose index probes each prune to one partition at run
    time. As `any_of`'s array, each statement of 500 tokens probed all 16 partitions' index
    with every token; 1,000 token forms at 1 M bindings (5,000 rows): 34-43 ms in one join
    against 68-73 ms in two statements (quiet), 3.7 s of a full reissue's 20 apply chunks."""
    return list(
        conn.exec_driver_sql(
            "SELECT b.token, b.pk, b.platform_pk, b.key_id, b.account_ref, b.bound_us, b.kind,"
            f" b.state FROM {unnest_params('bytea')} AS v(token) JOIN bindings AS b"
            " ON b.token = v.token WHERE b.state = ANY(%b::smallint[])",
            (list(tokens), list(live)),
        )
    )


def events_of_revocation(
    conn: Connection, tokens: Sequence[bytes], revocation_id: str, at_or_below: int
) -> set[bytes]:
    """Of `tokens`, those with a lifecycle event of the revocation at or below a sequence,
    in one statement joined as `live_bindings` is (1,000 token forms: 12-16 ms, against
    55-65 ms as two `IN` lists of 500)."""
    return {
        bytes(token)
        for (token,) in conn.exec_driver_sql(
            f"SELECT e.token FROM {unnest_params('bytea')} AS v(token) JOIN lifecycle_events AS e"
            " ON e.token = v.token WHERE e.revocation_id = %s AND e.seq <= %s",
            (list(tokens), revocation_id, at_or_below),
        )
    }


def bump_feed_heads(conn: Connection, counts: dict[int, int]) -> dict[int, int]:
    """platform pk -> entries to append: each platform's feed head moved on by its count;
    returns each new head. Two statements for any number of platforms (one UPDATE each
    cost a reissue's apply 2.0 s in 400 statements): the rows are first locked in pk order,
    the order every appender takes them in (the UPDATE's own join scans `principals` in
    heap order, which updates change). The lock is the UPDATE's own, FOR NO KEY UPDATE:
    FOR UPDATE also waits for every transaction holding a row's KEY SHARE lock, which each
    insert naming the principal in a foreign key takes (an ack's idempotency record), and
    stalled a reissue's apply behind its platforms' acks."""
    pks = sorted(counts)
    if len(pks) > 1:
        conn.exec_driver_sql(
            "SELECT pk FROM principals WHERE pk = ANY(%b::integer[]) ORDER BY pk FOR NO KEY UPDATE",
            (pks,),
        ).all()
    return {
        int(pk): int(head)
        for pk, head in conn.exec_driver_sql(
            "UPDATE principals AS p SET feed_head = p.feed_head + v.n"
            f" FROM {unnest_params('integer', 'bigint')} AS v(pk, n) WHERE p.pk = v.pk"
            " RETURNING p.pk, p.feed_head",
            (pks, [counts[pk] for pk in pks]),
        )
    }


def lock_bindings(
    conn: Connection, rows: Iterable[tuple[int, bytes, int | None]], state: int, now: int
) -> dict[int, bytes]:
    """Bindings (pk, token as read, state as read if it is to be revoked, else None) -> pk:
    the token each row holds now, locked until commit, and those to revoke set to `state`
    (REVOKING). Raises StaleRead, for the caller's transaction to run again, when a binding
    to revoke is no longer in the state it was read in: a withdrawal, an ack or another
    revocation committed in between, and the caller's decision rests on the old state.

    One UPDATE both locks and writes (the others are written unchanged, to lock them): a
    separate `SELECT ... FOR UPDATE` wrote a lock into every row and the UPDATE then wrote
    each again. 20,000 bindings of 200,000: 0.26-0.38 s against 0.55-1.21 s (alternated,
    the loaded 2-core machine). The UPDATE's row lock (FOR NO KEY UPDATE) still blocks
    every other writer of these rows, a re-key's change of the token included; only FOR
    KEY SHARE (foreign keys into bindings, of which there are none) would pass it. A row
    another transaction holds is waited for, and its state then compared as committed.

    An UPDATE has no ORDER BY: the rows are locked in the order of the sorted arrays, which
    the nested loop the sub-select makes the planner choose follows; should another plan
    ever lock in another order, a deadlock between two reports is retried (storage.db). By
    (pk, token), each row routes to its partition; a binding a re-key converted since it
    was read is missed there and locked by pk alone (every partition)."""
    wanted = sorted(rows, key=lambda r: (r[0], r[1]))
    was = {pk: read for pk, _, read in wanted if read is not None}
    out = {
        pk: bytes(token)
        for pk, token in conn.exec_driver_sql(
            "UPDATE bindings AS b"
            " SET state = CASE WHEN v.revoke THEN %s ELSE b.state END,"
            " updated_us = CASE WHEN v.revoke THEN %s ELSE b.updated_us END"
            f" FROM {unnest_params('bigint', 'bytea', 'boolean', 'smallint')}"
            " AS v(pk, token, revoke, was)"
            " WHERE b.pk = v.pk AND b.token = v.token AND (NOT v.revoke OR b.state = v.was)"
            " RETURNING b.pk, b.token",
            (
                state,
                now,
                [p for p, _, _ in wanted],
                [t for _, t, _ in wanted],
                [r is not None for *_, r in wanted],
                [r if r is not None else 0 for *_, r in wanted],
            ),
        )
    }
    missed = sorted({pk for pk, _, _ in wanted if pk not in out})
    if missed:  # moved by a re-key since read (or, to revoke, changed: StaleRead)
        again = []
        for pk, token, now_state in conn.exec_driver_sql(
            "SELECT pk, token, state FROM bindings WHERE pk = ANY(%b::bigint[])"
            " ORDER BY pk FOR UPDATE",
            (missed,),
        ):
            if pk in was and now_state != was[pk]:
                raise StaleRead(f"binding {pk}: state {now_state}, read as {was[pk]}")
            out[pk] = bytes(token)
            if pk in was:
                again.append((pk, out[pk]))
        if again:
            set_bindings_state(conn, again, state, now)
    return out


def next_pks(conn: Connection, sequence: str, n: int) -> list[int]:
    """n values of the sequence, in one statement: pks allocated before a COPY, which
    returns nothing (storage.orders)."""
    result = conn.exec_driver_sql(
        "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, n)
    )
    return [pk for (pk,) in result]


def set_bindings_state(
    conn: Connection, pairs: Sequence[tuple[int, bytes]], state: int, now: int
) -> None:
    """Set the state of bindings (pk, token) just read under lock (so none has moved)."""
    conn.exec_driver_sql(
        "UPDATE bindings AS b SET state = %s, updated_us = %s"
        f" FROM {unnest_params('bigint', 'bytea')} AS v(pk, token)"
        " WHERE b.pk = v.pk AND b.token = v.token",
        (state, now, [p for p, _ in pairs], [t for _, t in pairs]),
    )


def set_binding_states(
    conn: Connection, rows: Sequence[tuple[int, bytes, int]], was: int, now: int
) -> set[int]:
    """(pk, token, new state) of bindings now in state `was`; returns the pks written."""
    cols = list(zip(*rows, strict=True))
    result = conn.exec_driver_sql(
        "UPDATE bindings AS b SET state = v.state, updated_us = %s"
        f" FROM {unnest_params('bigint', 'bytea', 'smallint')} AS v(pk, token, state)"
        " WHERE b.pk = v.pk AND b.token = v.token AND b.state = %s RETURNING b.pk",
        (now, *(list(c) for c in cols), was),
    )
    return {pk for (pk,) in result}


def set_binding_states_by_pk(
    conn: Connection, rows: Sequence[tuple[int, int]], was: int, now: int
) -> None:
    """(pk, new state) of bindings now in state `was`, by pk alone: the rows
    `set_binding_states` did not match at their token (moved by a re-key, or no longer
    `was`). One statement for all of them, where it was one per row; without the token each
    pk probes every partition's primary key."""
    cols = list(zip(*rows, strict=True))
    conn.exec_driver_sql(
        "UPDATE bindings AS b SET state = v.state, updated_us = %s"
        f" FROM {unnest_params('bigint', 'smallint')} AS v(pk, state)"
        " WHERE b.pk = v.pk AND b.state = %s",
        (now, *(list(c) for c in cols), was),
    )


def update_numbers(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """rows as storage.numbers.save's updates: (token, key_id, carrier_pk, state,
    tenure_start_us, last_reissued_us, first_known_us, last_effective_us, updated_us,
    stored token)."""
    cols = list(zip(*rows, strict=True))
    conn.exec_driver_sql(
        "UPDATE numbers AS n SET token = v.token, key_id = v.key_id, carrier_pk = v.carrier_pk,"
        " state = v.state, tenure_start_us = v.tenure_start_us,"
        " last_reissued_us = v.last_reissued_us, first_known_us = v.first_known_us,"
        " last_effective_us = v.last_effective_us, updated_us = v.updated_us"
        f" FROM {unnest_params('bytea', 'text', 'bigint', 'smallint', *['bigint'] * 5, 'bytea')}"
        " AS v(token, key_id, carrier_pk, state, tenure_start_us, last_reissued_us,"
        " first_known_us, last_effective_us, updated_us, stored)"
        " WHERE n.token = v.stored",
        tuple(list(c) for c in cols),
    )


_NUMBER_COLUMNS = (
    "n.token, n.carrier_pk, n.state, n.tenure_start_us, n.last_reissued_us,"
    " n.first_known_us, n.last_effective_us"
)


def numbers_of(conn: Connection, tokens: Sequence[bytes], *, lock: bool) -> list[Any]:
    """numbers rows (token, carrier_pk, state, tenure_start_us, last_reissued_us,
    first_known_us, last_effective_us) stored under these tokens, in one statement, with
    `lock` FOR UPDATE (in token order, as the sorted array the nested loop follows).
    A few numbers read without a lock, or one number locked, are named in an `IN` list
    (`FEW`); several locked ones keep the token order."""
    if len(tokens) <= FEW and (not lock or len(tokens) == 1):
        where, params = any_of(conn, "n.token", tokens, "bytea")
        return list(
            conn.exec_driver_sql(
                f"SELECT {_NUMBER_COLUMNS} FROM numbers AS n WHERE {where}"
                + (" FOR UPDATE" if lock else ""),
                params,
            )
        )
    return list(
        conn.exec_driver_sql(
            f"SELECT {_NUMBER_COLUMNS}"
            f" FROM {unnest_params('bytea')} AS v(token) JOIN numbers AS n ON n.token = v.token"
            + (" FOR UPDATE OF n" if lock else ""),
            (sorted(tokens),),
        )
    )
