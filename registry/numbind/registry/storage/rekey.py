"""The store re-key's SQL: sweep every token-keyed table in keyset batches, under a lease.

Contracts the runner (registry.services.rekey) relies on:
- `read_batch` returns rows still under the old key, after a cursor, in key order. A row's
  key never changes while it is in the old form (numbers are keyed by token, but only
  conversion changes a token), and no row is ever written in the old form once the re-key
  has begun (services.tokenmap), so one pass of the cursor meets every old row once.
- `write_batch` converts rows only `WHERE key_id = <old key>`: a row some request converted
  meanwhile is skipped, never converted twice. Under PostgreSQL READ COMMITTED a row locked
  by a concurrent report or publish makes the UPDATE wait, then re-check that condition on
  the row as committed. The same transaction advances the job's cursor and renews the
  lease, and refuses (LeaseLost) if another runner holds it: a batch commits whole, with
  its cursor, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from numbind.registry.domain.keymap import RekeyState
from numbind.registry.storage import signals
from numbind.registry.storage.db import driver_sql
from numbind.registry.storage.dependents import move_dependents
from numbind.registry.storage.models import KeyDeltaRow, RekeyRow, StoreStateRow
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

__all__ = [
    "TABLES",
    "Job",
    "LeaseLost",
    "SweptTable",
    "acquire",
    "count_old",
    "finish",
    "left_behind",
    "read_batch",
    "release",
    "restart",
    "running_job",
    "set_total",
    "write_batch",
]


class LeaseLost(Exception):
    """Another runner holds the re-key's lease; this one must stop."""


@dataclass(frozen=True)
class SweptTable:
    name: str
    # The keyset column, and how its values are stored in rekeys.cursor.
    key: str
    key_kind: str  # "bytes", "int" or "text"
    # Columns the new row values are computed from, besides the key and the token.
    extra: tuple[str, ...] = ()
    # Columns written besides token and key_id (computed by the runner).
    derived: tuple[str, ...] = ()


# Every table that holds a token. bindings also carry a bucket (the token's prefix) and a
# digest over (key_id, token, account_ref, bound_at, kind), so both change with the token.
TABLES: tuple[SweptTable, ...] = (
    SweptTable("numbers", "token", "bytes"),
    SweptTable(
        "bindings",
        "pk",
        "int",
        extra=("account_ref", "bound_us", "kind"),
        derived=("bucket", "digest"),
    ),
    SweptTable("lifecycle_events", "pk", "int"),
    SweptTable("revocations", "id", "text"),
)


def encode_cursor(table: SweptTable, value: Any) -> bytes:
    if table.key_kind == "int":
        return int(value).to_bytes(8, "big", signed=True)
    if table.key_kind == "text":
        return str(value).encode()
    return bytes(value)


def decode_cursor(table: SweptTable, raw: bytes | None) -> Any:
    if raw is None:
        return None
    if table.key_kind == "int":
        return int.from_bytes(raw, "big", signed=True)
    if table.key_kind == "text":
        return raw.decode()
    return bytes(raw)


@dataclass(frozen=True)
class Job:
    id: int
    from_key_id: str
    to_key_id: str
    delta: bytes
    table_no: int
    cursor: bytes | None
    rows_total: int | None
    rows_done: int


def running_job(session: Session) -> Job | None:
    """The running re-key with its delta, if any."""
    row = session.scalars(
        select(RekeyRow)
        .where(RekeyRow.state == int(RekeyState.RUNNING))
        .order_by(RekeyRow.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    delta = session.scalar(select(KeyDeltaRow.delta).where(KeyDeltaRow.key_id == row.from_key_id))
    if delta is None:  # forget_key refuses while running, so only a hand-edited store
        raise RuntimeError(f"re-key {row.id}: no delta for {row.from_key_id}")
    return Job(
        row.id,
        row.from_key_id,
        row.to_key_id,
        delta,
        row.table_no,
        row.cursor,
        row.rows_total,
        row.rows_done,
    )


def acquire(session: Session, job_id: int, owner: str, now: int, until: int) -> bool:
    """Take the lease if it is free, expired or already ours."""
    result: Any = session.execute(
        update(RekeyRow)
        .where(
            RekeyRow.id == job_id,
            RekeyRow.state == int(RekeyState.RUNNING),
            (RekeyRow.lease_owner.is_(None))
            | (RekeyRow.lease_owner == owner)
            | (RekeyRow.lease_until_us < now),
        )
        .values(
            lease_owner=owner,
            lease_until_us=until,
            run_started_us=now,
            run_rows_base=RekeyRow.rows_done,
            updated_us=now,
        )
    )
    return bool(result.rowcount == 1)


def release(session: Session, job_id: int, owner: str) -> None:
    session.execute(
        update(RekeyRow)
        .where(RekeyRow.id == job_id, RekeyRow.lease_owner == owner)
        .values(lease_owner=None, lease_until_us=None)
    )


def _renew(session: Session, job_id: int, owner: str, now: int, until: int, **values: Any) -> None:
    result: Any = session.execute(
        update(RekeyRow)
        .where(
            RekeyRow.id == job_id,
            RekeyRow.lease_owner == owner,
            RekeyRow.state == int(RekeyState.RUNNING),
        )
        .values({"lease_until_us": until, "updated_us": now, **values})
    )
    if result.rowcount != 1:
        raise LeaseLost(f"re-key {job_id}: lease no longer held by {owner}")


def count_old(session: Session, from_key_id: str) -> int:
    """Rows under the old key in every swept table (a full count: done once per re-key)."""
    return sum(
        int(
            session.execute(
                text(f"SELECT count(*) FROM {t.name} WHERE key_id = :k"), {"k": from_key_id}
            ).scalar_one()
        )
        for t in TABLES
    )


def set_total(session: Session, job_id: int, owner: str, total: int, now: int, until: int) -> None:
    _renew(session, job_id, owner, now, until, rows_total=total)


def read_batch(
    session: Session, table: SweptTable, from_key_id: str, after: Any, limit: int
) -> list[tuple[Any, ...]]:
    """Up to `limit` rows of `table` still under `from_key_id` after the cursor, in key order:
    (key, token, *extra)."""
    cols = ", ".join((table.key, "token", *table.extra))
    where, params = "key_id = ?", [from_key_id]
    if after is not None:
        where += f" AND {table.key} > ?"
        params.append(after)
    sql = f"SELECT {cols} FROM {table.name} WHERE {where} ORDER BY {table.key} LIMIT {int(limit)}"
    # Driver-level SQL: no statement compilation or bind processing per batch.
    conn = session.connection()
    return [tuple(r) for r in conn.exec_driver_sql(driver_sql(conn, sql), tuple(params))]


def write_batch(
    session: Session,
    job_id: int,
    owner: str,
    table_no: int,
    rows: Sequence[tuple[Any, ...]],
    last: Any,
    from_key_id: str,
    to_key_id: str,
    now: int,
    until: int,
) -> None:
    """Convert one batch and advance the job to `last` (the batch's last key), in the
    caller's transaction.

    `rows` are (key, new token, *derived), best ordered by new token (index entries go in
    in order); an empty batch only moves the job to the start of table `table_no`."""
    if not rows:
        _renew(session, job_id, owner, now, until, table_no=table_no, cursor=None)
        return
    table = TABLES[table_no]
    _renew(
        session,
        job_id,
        owner,
        now,
        until,
        table_no=table_no,
        cursor=encode_cursor(table, last),
        rows_done=RekeyRow.rows_done + len(rows),
    )
    conn: Connection = session.connection()
    sets = ", ".join(f"{c} = ?" for c in ("token", "key_id", *table.derived))
    sql = f"UPDATE {table.name} SET {sets} WHERE {table.key} = ? AND key_id = ?"
    conn.exec_driver_sql(
        driver_sql(conn, sql),
        [(new, to_key_id, *derived, key, from_key_id) for key, new, *derived in rows],
    )
    if table.name == "bindings":
        # Orders share their binding's token (the partition key).
        move_dependents(conn, [(key, new) for key, new, *_ in rows])


def left_behind(session: Session, from_key_id: str) -> list[str]:
    """Tables that still hold a row under the old key (none, if the protocol held)."""
    return [
        t.name
        for t in TABLES
        if session.execute(
            text(f"SELECT 1 FROM {t.name} WHERE key_id = :k LIMIT 1"), {"k": from_key_id}
        ).first()
        is not None
    ]


def restart(session: Session, job_id: int, owner: str, now: int, until: int) -> None:
    _renew(session, job_id, owner, now, until, table_no=0, cursor=None)


def finish(session: Session, job_id: int, owner: str, now: int) -> None:
    """Mark the re-key done and move the key map's epoch, so every process stops looking
    for the old form (and digests answer again)."""
    _renew(
        session,
        job_id,
        owner,
        now,
        now,
        state=int(RekeyState.DONE),
        finished_us=now,
        lease_owner=None,
        lease_until_us=None,
        rows_done=func.coalesce(RekeyRow.rows_total, RekeyRow.rows_done),
    )
    session.execute(
        update(StoreStateRow).where(StoreStateRow.id == 1).values(epoch=StoreStateRow.epoch + 1)
    )
    signals.announce(session, signals.KEYS)
