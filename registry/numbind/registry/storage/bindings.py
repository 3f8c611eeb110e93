"""Bindings: bulk upsert and withdraw, per-bucket digests, pages, lookups by token.

Every function takes the caller's session (one unit of work) and the platform's principal pk,
and touches only that platform's rows — except `bindings_for_token`, which serves the
registry's own cross-platform work (reissue, holder queries).

PublishBindings is the hottest write path, so `prepare` + `upsert` stay off the ORM and off
Core's per-row bind processing (measured ~7 us/row, as much as SQLite's own insert): rows
are built as tuples before the transaction, and written with driver-level SQL through the
session's connection — multi-row INSERTs on SQLite, COPY on PostgreSQL.
The rest uses Core selects; what reconciliation reads (digests, pages) is in
storage.reconcile. Contracts callers MUST keep are on each function.

Tokens arrive mapped to the store key (registry.domain.keymap). While a re-key runs a row
may still be in the old form, so lookups ask for both forms at once, and an upsert that
finds the old form converts that row in place (token, key id, bucket and digest change
together), so a binding is never held twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from numbind.protocol.digest import binding_digest
from numbind.registry.domain.bindings import (
    PublishCounts,
    WithdrawCounts,
)
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import (
    LIVE_BINDING_STATES,
    Binding,
    BindingKind,
    BindingState,
    Token,
)
from numbind.registry.storage import pgcopy, pgsets
from numbind.registry.storage.db import StaleRead, driver_sql, marks
from numbind.registry.storage.dependents import move_dependents
from numbind.registry.storage.models import BindingRow
from sqlalchemy import Connection
from sqlalchemy.orm import Session

__all__ = [
    "PreparedBatch",
    "StoredBinding",
    "bindings_for_token",
    "live_for_tokens",
    "prepare",
    "upsert",
    "withdraw",
]

_T = BindingRow.__table__.c
_LIVE = tuple(int(s) for s in LIVE_BINDING_STATES)
_LIVE_SQL = ", ".join(map(str, _LIVE))
_ACTIVE = int(BindingState.ACTIVE)
_WITHDRAWN = int(BindingState.WITHDRAWN)
_REVOKED = int(BindingState.REVOKED)
_REVOKING = int(BindingState.REVOKING)
# Parameters per SQLite statement (lookups, multi-row inserts): SQLite's default limit since
# 3.32, and a cap on statement size where a build allows more.
_MAX_VARIABLES = 32_766

# An insert-ready row: (platform_pk, key_id, token, account_ref, bound_us, kind, state,
# bucket, digest, updated_us), in the column order of _INSERT.
Row = tuple[int, str, bytes, bytes, int, int, int, int, bytes, int]


@dataclass(frozen=True)
class PreparedBatch:
    """One platform's publish batch as insert-ready rows, derived columns included.

    Built by `prepare` before the write transaction opens: on SQLite a write transaction
    holds the single writer lock, and any Python work done inside it (hashing, building
    parameter tuples) serialises every concurrent publisher and competes for the GIL with
    the driver's own steps.
    """

    platform_pk: int
    # Ordered by (token, account_ref).
    rows: list[Row]
    # The distinct tokens, ordered: the existing-row lookup's parameters.
    tokens: list[bytes]
    # While a re-key runs: store-key token -> its old form, also looked up.
    old: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredBinding:
    pk: int
    platform_pk: int
    binding: Binding
    state: BindingState

    @property
    def bound_us(self) -> int:
        return self.binding.bound_us


def prepare(
    platform_pk: int,
    bindings: Iterable[Binding],
    now: int,
    old: dict[bytes, bytes] | None = None,
) -> PreparedBatch:
    """Derive bucket and digest for each binding and order the batch by token.

    MUST: every token is under the store key; `old` maps a token to its old form while a
    re-key runs (registry.domain.keymap.StoreToken).

    Sorted inserts land on neighbouring B-tree pages of the token-led indexes, which
    measured ~1.4x faster than random order on SQLite with 200,000 rows; on PostgreSQL a
    common order also means overlapping batches take row locks in the same order.
    """
    rows: list[Row] = []
    append = rows.append
    for b in bindings:
        t = b.token
        token = t.value
        kind = int(b.kind)
        append(
            (
                platform_pk,
                t.key_id,
                token,
                b.account_ref,
                b.bound_us,
                kind,
                _ACTIVE,
                (token[1] << 8) | token[2],  # digest.bucket16, inlined
                binding_digest(t.key_id, token, b.account_ref, b.bound_us, kind),
                now,
            )
        )
    rows.sort(key=lambda r: (r[2], r[3]))
    return PreparedBatch(platform_pk, rows, sorted({r[2] for r in rows}), old or {})


def upsert(session: Session, batch: PreparedBatch) -> PublishCounts:
    """Insert new bindings, update changed or returning ones, count the rest as unchanged.

    MUST: batch holds each (token, account_ref) at most once (validated by the caller).
    A WITHDRAWN binding published again becomes ACTIVE and counts as updated; a REVOKING
    one keeps its state (its revocation order is still out). A REVOKED binding becomes
    ACTIVE only with a bound_at after its revocation (the account bound the number anew):
    republished as it was, it is a stale row of a platform's nightly snapshot and stays
    revoked, counted as revoked, so a sync cannot undo a holder's revocation.
    """
    conn = session.connection()
    # PostgreSQL: a batch of new bindings needs no lookup (storage.pgcopy.insert_if_all_new).
    if (
        not batch.old
        and conn.dialect.name == "postgresql"
        and pgcopy.insert_if_all_new(conn, batch.rows)
    ):
        return PublishCounts(len(batch.rows), 0, 0)
    back = {o: v for v, o in batch.old.items()}
    existing = {
        (back.get(token, token), ref): (pk, token, bound_us, kind, state, updated_us)
        for pk, token, ref, bound_us, kind, state, updated_us in _lookup(
            conn,
            batch.platform_pk,
            ("pk", "token", "account_ref", "bound_us", "kind", "state", "updated_us"),
            batch.tokens + list(batch.old.values()),
        )
    }
    if not existing:  # a batch of new bindings: the common case of a first load
        _insert(conn, batch.rows)
        return PublishCounts(len(batch.rows), 0, 0)
    inserts: list[Row] = []
    updates: list[tuple[Any, ...]] = []
    inserted = changed = unchanged = revoked = 0
    for row in batch.rows:
        _, key_id, token, ref, bound_us, kind, _, bucket, digest, now = row
        found = existing.get((token, ref))
        if found is None:
            inserts.append(row)
            continue
        pk, stored, old_bound_us, old_kind, state, changed_us = found
        # Found in the old form: the row is converted whatever else happens, but a
        # conversion alone is no change the platform made, so it counts as before.
        convert = stored != token
        kept = binding_digest(key_id, token, ref, old_bound_us, old_kind) if convert else b""
        # A REVOKED row's updated_us is when it was revoked: nothing else touches it (a
        # conversion keeps it too), so it stays the revocation time a sync compares with.
        if state == _REVOKED and bound_us <= max(old_bound_us, changed_us):
            revoked += 1
            if convert:
                kept_us = changed_us
                updates.append(
                    (
                        key_id,
                        token,
                        bucket,
                        old_bound_us,
                        old_kind,
                        state,
                        kept,
                        kept_us,
                        pk,
                        stored,
                        state,
                    )
                )
            continue
        live = state in _LIVE
        if live and (old_bound_us, old_kind) == (bound_us, kind):
            unchanged += 1
            if convert:
                kept_row = (key_id, token, bucket, old_bound_us, old_kind, state, kept, now, pk)
                updates.append((*kept_row, stored, state))
            continue
        changed += 1
        new_state = state if live else _ACTIVE
        updates.append(
            (key_id, token, bucket, bound_us, kind, new_state, digest, now, pk, stored, state)
        )
    if inserts:
        _insert(conn, inserts)
        inserted = len(inserts)
    if updates:
        _compare_and_set(
            conn,
            "publish",
            "UPDATE bindings SET key_id = ?, token = ?, bucket = ?, bound_us = ?, kind = ?,"
            " state = ?, digest = ?, updated_us = ? WHERE pk = ? AND token IN (?, ?)"
            " AND state = ?",
            # The row's token as read, or the store-key form a re-key batch may have
            # converted it to meanwhile (the only change a token sees): both name the row.
            # And its state as read: a revocation or an ack committed since (the lookup
            # takes no lock) must not be written over with it.
            [(*u[:10], u[1], u[10]) for u in updates],
        )
        move_dependents(conn, [(u[8], u[1]) for u in updates if u[9] != u[1]])
    return PublishCounts(inserted, changed, unchanged, revoked)


def withdraw(
    session: Session,
    platform_pk: int,
    keys: Sequence[tuple[StoreToken, bytes]],
    now: int,
) -> WithdrawCounts:
    """Mark the platform's live bindings named by (token, account_ref) WITHDRAWN; the rest
    are not found. A row in the old form is found too (and left for the re-key)."""
    conn = session.connection()
    back = {t.old: t.value for t, _ in keys if t.old is not None}
    live = {
        (back.get(token, token), ref): (pk, token, back.get(token, token))
        for pk, token, ref, state in _lookup(
            conn,
            platform_pk,
            ("pk", "token", "account_ref", "state"),
            sorted({form for t, _ in keys for form in t.forms}),
        )
        if state in _LIVE
    }
    pks = [(_WITHDRAWN, now, *row) for t, ref in keys if (row := live.get((t.value, ref)))]
    if pks:
        # Still live: one revoked since the lookup (which takes no lock) is not withdrawn.
        _compare_and_set(
            conn,
            "withdraw",
            "UPDATE bindings SET state = ?, updated_us = ? WHERE pk = ? AND token IN (?, ?)"
            f" AND state IN ({_LIVE_SQL})",
            pks,
        )
    return WithdrawCounts(len(pks), len(keys) - len(pks))


def revoking_again(session: Session, found: Sequence[StoredBinding], now: int) -> None:
    """ACTIVE bindings (as read) whose revocation order is still open become REVOKING again,
    for that order's ack to revoke them (services.arrival). StaleRead if one changed since
    it was read."""
    if found:
        _compare_and_set(
            session.connection(),
            "revoking again",
            "UPDATE bindings SET state = ?, updated_us = ? WHERE pk = ? AND token = ?"
            " AND state = ?",
            [(_REVOKING, now, b.pk, b.binding.token.value, int(b.state)) for b in found],
        )


def _compare_and_set(
    conn: Connection, what: str, sql: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """One row each, written only where it is still as read (the statement's conditions);
    StaleRead if any changed since, for Database.transact to run the transaction again."""
    written = conn.exec_driver_sql(driver_sql(conn, sql), rows).rowcount
    if written != len(rows):
        raise StaleRead(f"{what}: {len(rows) - written} bindings changed since read")


def bindings_for_token(session: Session, token: StoreToken | bytes) -> list[StoredBinding]:
    """Every live binding to this token (in either form), across all platforms, by platform
    then pk."""
    value = token if isinstance(token, bytes) else token.value
    found = live_for_tokens(session, [token]).get(value, [])
    return sorted(found, key=lambda b: (b.platform_pk, b.pk))


def live_for_tokens(
    session: Session, tokens: Sequence[StoreToken | bytes]
) -> dict[bytes, list[StoredBinding]]:
    """Live bindings to each token, across all platforms (reissues, holder queries and
    revocations), by store-key value, in no particular order; tokens without any are
    absent. Each StoredBinding keeps the form its row is stored in. A reissue batch reads
    ~100,000 rows here inside its transaction, so no ORDER BY."""
    out: dict[bytes, list[StoredBinding]] = {}
    forms: dict[bytes, bytes] = {}
    for t in tokens:
        if isinstance(t, bytes):
            forms[t] = t
        else:
            forms.update(dict.fromkeys(t.forms, t.value))
    wanted = list(forms)
    conn = session.connection()
    for rows in _live_rows(conn, wanted):
        for token, pk, platform_pk, key_id, ref, bound_us, kind, state in rows:
            out.setdefault(forms[token], []).append(
                StoredBinding(
                    pk,
                    platform_pk,
                    Binding(Token(key_id, token), ref, bound_us, _KINDS[kind]),
                    _STATES[state],
                )
            )
    return out


def _live_rows(conn: Connection, tokens: list[bytes]) -> Iterator[Sequence[Any]]:
    """The live bindings' rows for `tokens`, a batch at a time: on PostgreSQL one join for
    more than a few tokens (storage.pgsets.live_bindings); otherwise lookups of 500."""
    if conn.dialect.name == "postgresql" and len(tokens) > pgsets.FEW:
        yield pgsets.live_bindings(conn, tokens, _LIVE)
        return
    for i in range(0, len(tokens), 500):
        part = tokens[i : i + 500]
        # Driver SQL: a holder query runs this for one token at each member, where building
        # the statement cost more than the read.
        where, params = pgsets.any_of(conn, "token", part, "bytea")
        rows = conn.exec_driver_sql(
            driver_sql(
                conn,
                "SELECT token, pk, platform_pk, key_id, account_ref, bound_us, kind, state"
                f" FROM bindings WHERE {where} AND state IN ({_LIVE_SQL})",
            ),
            params,
        )
        # .all(): the rows in one fetch (iterating the result fetched them one by one).
        yield rows.all()


# Enum members by stored value: a dict lookup per row, where calling the enum costs ten
# times as much (live_for_tokens reads ~100,000 rows in a reissue's transaction).
_KINDS = {k.value: k for k in BindingKind}
_STATES = {s.value: s for s in BindingState}


def _lookup(
    conn: Connection, platform_pk: int, columns: Sequence[str], tokens: list[bytes]
) -> Iterator[tuple[Any, ...]]:
    """The platform's rows (any state) holding any of tokens, a few queries per batch."""
    cols = ", ".join(f"b.{c}" for c in columns)
    if conn.dialect.name == "postgresql":
        # One array parameter joined to the unique index, each token an index probe (in
        # token order, so each partition's index is walked forwards). The array goes in
        # through a scalar subquery so that the planner cannot see its length and always
        # plans a nested loop: given the array itself, it hashed 10,000 tokens against a
        # scan of the platform's ~700,000 rows at 10 M rows (~250 us a token, against ~6
        # for the probes; a LATERAL subquery fenced by OFFSET 0 probed too, at ~60). An IN
        # list was planned as a scan of the platform's bucket index while the statistics
        # still described a small table (a fresh store taking its first load).
        yield from conn.exec_driver_sql(_PG_LOOKUP.format(cols=cols), (tokens, platform_pk))
        return
    chunk_size = _max_variables(conn) - 1
    for i in range(0, len(tokens), chunk_size):
        chunk = tokens[i : i + chunk_size]
        sql = (
            f"SELECT {cols} FROM bindings b"
            f" WHERE b.platform_pk = ? AND b.token IN ({marks(len(chunk))})"
        )
        yield from conn.exec_driver_sql(sql, (platform_pk, *chunk))


_PG_LOOKUP = (
    "SELECT {cols} FROM unnest((SELECT %b::bytea[])) AS t(token)"
    " JOIN bindings b ON b.platform_pk = %s AND b.token = t.token"
)
_INSERT = (
    "INSERT INTO bindings (platform_pk, key_id, token, account_ref, bound_us, kind, state,"
    " bucket, digest, updated_us) VALUES "
)
_ROW_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _insert(conn: Connection, rows: list[Row]) -> None:
    if conn.dialect.name != "sqlite":
        pgcopy.copy_bindings(conn, rows)
        return
    # As few statements as the variable limit allows. sqlite3 releases the GIL around
    # every statement step and must win it back afterwards, which costs up to the switch
    # interval (5 ms) whenever another thread is busy (gRPC, the next batch's validation):
    # beside one busy thread, a statement per row or per 99 rows ran at about a quarter of
    # its unloaded rate, one per 3,276 rows at about half.
    n = _max_variables(conn) // len(_ROW_MARKS.split(","))
    for i in range(0, len(rows), n):
        chunk = rows[i : i + n]
        sql = _INSERT + ", ".join([_ROW_MARKS] * len(chunk))
        conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))


def _max_variables(conn: Connection) -> int:
    """How many `?` one SQLite statement may hold (999 before 3.32, 32766 after, or as
    built), capped so one statement stays a reasonable size."""
    dbapi = conn.connection.driver_connection
    assert isinstance(dbapi, sqlite3.Connection)
    return min(_MAX_VARIABLES, dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
