"""Numbers (per-token lifecycle state) and the lifecycle event log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import NumberState, now_us
from numbind.registry.storage.db import driver_sql
from numbind.registry.storage.models import LifecycleEventRow, NumberRow
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

_COLUMNS = (
    NumberRow.token,
    NumberRow.carrier_pk,
    NumberRow.state,
    NumberRow.tenure_start_us,
    NumberRow.last_reissued_us,
    NumberRow.first_known_us,
    NumberRow.last_effective_us,
)


def _record(row: Any) -> NumberRecord:
    return NumberRecord(
        carrier_pk=row[1],
        state=NumberState(row[2]),
        tenure_start_us=row[3],
        last_reissued_us=row[4],
        first_known_us=row[5],
        last_effective_us=row[6],
    )


def load(
    session: Session, tokens: Iterable[bytes], *, lock: bool = False
) -> dict[bytes, NumberRecord]:
    """Records for the given tokens (absent ones are unknown numbers)."""
    out: dict[bytes, NumberRecord] = {}
    wanted = list(dict.fromkeys(tokens))
    for i in range(0, len(wanted), 500):
        stmt = select(*_COLUMNS).where(NumberRow.token.in_(wanted[i : i + 500]))
        if lock:
            # PostgreSQL: serialise concurrent reports for the same numbers.
            stmt = stmt.with_for_update()
        for row in session.execute(stmt):
            out[row[0]] = _record(row)
    return out


def get(session: Session, token: bytes) -> NumberRecord | None:
    return load(session, [token]).get(token)


def save(
    session: Session, records: dict[bytes, tuple[str, NumberRecord]], existing: set[bytes]
) -> None:
    """Write final states: token -> (key_id, record); existing says insert or update."""
    now = now_us()
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    for token, (key_id, r) in records.items():
        values = (
            key_id,
            r.carrier_pk,
            int(r.state),
            r.tenure_start_us,
            r.last_reissued_us,
            r.first_known_us,
            r.last_effective_us,
            now,
        )
        (updates if token in existing else inserts).append((*values, token))
    conn = session.connection()
    if inserts:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                "INSERT INTO numbers (key_id, carrier_pk, state, tenure_start_us,"
                " last_reissued_us, first_known_us, last_effective_us, updated_us, token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            inserts,
        )
    if updates:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                "UPDATE numbers SET key_id = ?, carrier_pk = ?, state = ?, tenure_start_us = ?,"
                " last_reissued_us = ?, first_known_us = ?, last_effective_us = ?,"
                " updated_us = ? WHERE token = ?",
            ),
            updates,
        )


def log_events(session: Session, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        session.execute(insert(LifecycleEventRow), list(rows))
