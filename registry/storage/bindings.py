"""Bindings: bulk upsert and withdraw, per-bucket digests, pages, lookups by token.

Every function takes the caller's session (one unit of work) and the platform's principal pk,
and touches only that platform's rows — except `bindings_for_token`, which serves the
registry's own cross-platform work (reissue, holder queries).

PublishBindings is the hottest write path, so `upsert` stays off the ORM and off Core's
per-row bind processing (measured ~7 us/row, as much as SQLite's own insert): it runs
driver-level executemany with positional tuples through the session's connection. The rest
uses Core selects. Contracts callers MUST keep are on each function.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select
from sqlalchemy.orm import Session

from clients.protocol.digest import DIGEST_BYTES, MAX_BUCKET_BITS, binding_digest
from registry.domain.bindings import (
    BindingKey,
    BucketDigest,
    PageCursor,
    PublishCounts,
    WithdrawCounts,
)
from registry.domain.types import LIVE_BINDING_STATES, Binding, BindingKind, BindingState, Token
from registry.storage.models import BindingRow

__all__ = [
    "PreparedBatch",
    "StoredBinding",
    "bindings_for_token",
    "digests",
    "list_page",
    "prepare",
    "upsert",
    "withdraw",
]

_T = BindingRow.__table__.c
_LIVE = tuple(int(s) for s in LIVE_BINDING_STATES)
_ACTIVE = int(BindingState.ACTIVE)
_WITHDRAWN = int(BindingState.WITHDRAWN)
# Tokens per `IN (...)` lookup: under SQLite's historical 999-variable limit.
_LOOKUP_CHUNK = 900
# Rows fetched per round trip when streaming a platform's digests.
_STREAM_ROWS = 20_000

# (key_id, token, account_ref, bound_us, kind, bucket, digest)
Row = tuple[str, bytes, bytes, int, int, int, bytes]


@dataclass(frozen=True)
class PreparedBatch:
    """One publish batch with its derived columns (bucket, digest), ordered by token.

    Built by `prepare` before the write transaction opens: on SQLite a write transaction
    holds the single writer lock, and hashing 10,000 rows inside it would serialise that
    work across every concurrent publisher.
    """

    rows: list[Row]


@dataclass(frozen=True)
class StoredBinding:
    pk: int
    platform_pk: int
    binding: Binding
    state: BindingState


def prepare(bindings: Iterable[Binding]) -> PreparedBatch:
    """Derive bucket and digest for each binding; sort by token.

    Sorted inserts land on neighbouring B-tree pages of the token-led indexes, which
    measured ~1.4x faster than random order on SQLite with 200,000 rows.
    """
    rows: list[Row] = []
    append = rows.append
    for b in bindings:
        t = b.token
        kind = int(b.kind)
        append(
            (
                t.key_id,
                t.value,
                b.account_ref,
                b.bound_us,
                kind,
                (t.value[0] << 8) | t.value[1],
                binding_digest(t.key_id, t.value, b.account_ref, b.bound_us, kind),
            )
        )
    rows.sort(key=lambda r: (r[1], r[2]))
    return PreparedBatch(rows)


def upsert(session: Session, platform_pk: int, batch: PreparedBatch, now: int) -> PublishCounts:
    """Insert new bindings, update changed or returning ones, count the rest as unchanged.

    MUST: batch holds each (token, account_ref) at most once (validated by the caller).
    A WITHDRAWN or REVOKED binding published again becomes ACTIVE and counts as updated; a
    REVOKING one keeps its state (its revocation order is still out).
    """
    conn = session.connection()
    existing = {
        (token, ref): (pk, key_id, bound_us, kind, state)
        for pk, token, ref, key_id, bound_us, kind, state in _lookup(
            conn, platform_pk, "pk, token, account_ref, key_id, bound_us, kind, state", batch.rows
        )
    }
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    unchanged = 0
    for key_id, token, ref, bound_us, kind, bucket, digest in batch.rows:
        old = existing.get((token, ref))
        if old is None:
            inserts.append(
                (platform_pk, key_id, token, ref, bound_us, kind, _ACTIVE, bucket, digest, now)
            )
            continue
        pk, old_key_id, old_bound_us, old_kind, state = old
        live = state in _LIVE
        if live and (old_key_id, old_bound_us, old_kind) == (key_id, bound_us, kind):
            unchanged += 1
            continue
        new_state = state if live else _ACTIVE
        updates.append((key_id, bound_us, kind, new_state, digest, now, pk))
    if inserts:
        conn.exec_driver_sql(
            _sql(
                conn,
                "INSERT INTO bindings (platform_pk, key_id, token, account_ref, bound_us, kind,"
                " state, bucket, digest, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            inserts,
        )
    if updates:
        conn.exec_driver_sql(
            _sql(
                conn,
                "UPDATE bindings SET key_id = ?, bound_us = ?, kind = ?, state = ?, digest = ?,"
                " updated_us = ? WHERE pk = ?",
            ),
            updates,
        )
    return PublishCounts(len(inserts), len(updates), unchanged)


def withdraw(
    session: Session, platform_pk: int, keys: Sequence[BindingKey], now: int
) -> WithdrawCounts:
    """Mark the platform's live bindings named by keys WITHDRAWN; the rest are not found."""
    conn = session.connection()
    live = {
        (token, ref): pk
        for pk, token, ref, state in _lookup(
            conn, platform_pk, "pk, token, account_ref, state", keys
        )
        if state in _LIVE
    }
    pks = [(_WITHDRAWN, now, pk) for k in keys if (pk := live.get((k.token.value, k.account_ref)))]
    if pks:
        conn.exec_driver_sql(
            _sql(conn, "UPDATE bindings SET state = ?, updated_us = ? WHERE pk = ?"), pks
        )
    return WithdrawCounts(len(pks), len(keys) - len(pks))


def digests(session: Session, platform_pk: int, bits: int, key_id: str) -> list[BucketDigest]:
    """Count and XOR digest of the platform's live bindings per non-empty bucket, in order.

    Streams (bucket, digest) pairs in partitions, so memory stays flat however many
    bindings the platform has; XOR runs on Python ints, one per 16-bit bucket, folded to
    `bits` at the end.
    """
    stmt = select(_T.bucket, _T.digest).where(_T.platform_pk == platform_pk, _T.state.in_(_LIVE))
    if key_id:
        stmt = stmt.where(_T.key_id == key_id)
    size = 1 << MAX_BUCKET_BITS
    acc = [0] * size
    counts = [0] * size
    from_bytes = int.from_bytes
    result = session.execute(stmt, execution_options={"yield_per": _STREAM_ROWS})
    for part in result.partitions():
        for bucket, digest in part:
            acc[bucket] ^= from_bytes(digest, "big")
            counts[bucket] += 1
    shift = MAX_BUCKET_BITS - bits
    folded: dict[int, list[int]] = {}
    for b16 in range(size):
        if counts[b16]:
            slot = folded.setdefault(b16 >> shift, [0, 0])
            slot[0] += counts[b16]
            slot[1] ^= acc[b16]
    return [
        BucketDigest(b, n, x.to_bytes(DIGEST_BYTES, "big")) for b, (n, x) in sorted(folded.items())
    ]


def list_page(
    session: Session,
    platform_pk: int,
    lo: int,
    hi: int,
    key_id: str,
    after: PageCursor | None,
    limit: int,
) -> list[tuple[int, int, Binding]]:
    """Up to `limit` live bindings with 16-bit bucket in [lo, hi], as (bucket, pk, binding),
    in (bucket, pk) order — the order of the (platform_pk, bucket) index, whose entries also
    carry the row id, so a page is one index range scan from the cursor on."""
    start = after.after_bucket if after else lo
    stmt = select(
        _T.bucket, _T.pk, _T.key_id, _T.token, _T.account_ref, _T.bound_us, _T.kind
    ).where(
        _T.platform_pk == platform_pk,
        _T.bucket >= start,
        _T.bucket <= hi,
        _T.state.in_(_LIVE),
    )
    if after is not None:
        stmt = stmt.where(or_(_T.bucket > after.after_bucket, _T.pk > after.after_pk))
    if key_id:
        stmt = stmt.where(_T.key_id == key_id)
    stmt = stmt.order_by(_T.bucket, _T.pk).limit(limit)
    return [
        (bucket, pk, Binding(Token(kid, token), ref, bound_us, BindingKind(kind)))
        for bucket, pk, kid, token, ref, bound_us, kind in session.execute(stmt)
    ]


def bindings_for_token(session: Session, token: bytes) -> list[StoredBinding]:
    """Every live binding to this token, across all platforms, by platform then pk."""
    stmt = (
        select(_T.pk, _T.platform_pk, _T.key_id, _T.account_ref, _T.bound_us, _T.kind, _T.state)
        .where(_T.token == token, _T.state.in_(_LIVE))
        .order_by(_T.platform_pk, _T.pk)
    )
    return [
        StoredBinding(
            pk,
            platform_pk,
            Binding(Token(key_id, token), ref, bound_us, BindingKind(kind)),
            BindingState(state),
        )
        for pk, platform_pk, key_id, ref, bound_us, kind, state in session.execute(stmt)
    ]


def _lookup(
    conn: Connection,
    platform_pk: int,
    columns: str,
    items: Sequence[Row] | Sequence[BindingKey],
) -> Iterator[tuple[Any, ...]]:
    """The platform's rows (any state) for the tokens of items: one query per chunk."""
    tokens = sorted({it[1] if isinstance(it, tuple) else it.token.value for it in items})
    for i in range(0, len(tokens), _LOOKUP_CHUNK):
        chunk = tokens[i : i + _LOOKUP_CHUNK]
        marks = ", ".join(["?"] * len(chunk))
        sql = f"SELECT {columns} FROM bindings WHERE platform_pk = ? AND token IN ({marks})"
        yield from conn.exec_driver_sql(_sql(conn, sql), (platform_pk, *chunk))


def _sql(conn: Connection, text: str) -> str:
    """Driver SQL in the dialect's positional paramstyle (SQLite `?`, psycopg `%s`)."""
    return text if conn.dialect.paramstyle == "qmark" else text.replace("?", "%s")
