"""Numbers (per-token lifecycle state) and the lifecycle event log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from registry.domain.lifecycle import NumberRecord
from registry.domain.types import NumberState, now_us
from registry.storage.models import LifecycleEventRow, NumberRow


def _record(row: NumberRow) -> NumberRecord:
    return NumberRecord(
        carrier_pk=row.carrier_pk,
        state=NumberState(row.state),
        tenure_start_us=row.tenure_start_us,
        last_reissued_us=row.last_reissued_us,
        first_known_us=row.first_known_us,
        last_effective_us=row.last_effective_us,
    )


def load(
    session: Session, tokens: Iterable[bytes], *, lock: bool = False
) -> dict[bytes, NumberRecord]:
    """Records for the given tokens (absent ones are unknown numbers)."""
    out: dict[bytes, NumberRecord] = {}
    wanted = list(dict.fromkeys(tokens))
    for i in range(0, len(wanted), 500):
        stmt = select(NumberRow).where(NumberRow.token.in_(wanted[i : i + 500]))
        if lock:
            # PostgreSQL: serialise concurrent reports for the same numbers.
            stmt = stmt.with_for_update()
        for row in session.scalars(stmt):
            out[row.token] = _record(row)
    return out


def get(session: Session, token: bytes) -> NumberRecord | None:
    row = session.get(NumberRow, token)
    return _record(row) if row else None


def save(
    session: Session, records: dict[bytes, tuple[str, NumberRecord]], existing: set[bytes]
) -> None:
    """Write final states: token -> (key_id, record); existing says insert or update."""
    now = now_us()
    for token, (key_id, rec) in records.items():
        values = {
            "key_id": key_id,
            "carrier_pk": rec.carrier_pk,
            "state": int(rec.state),
            "tenure_start_us": rec.tenure_start_us,
            "last_reissued_us": rec.last_reissued_us,
            "first_known_us": rec.first_known_us,
            "last_effective_us": rec.last_effective_us,
            "updated_us": now,
        }
        if token in existing:
            row = session.get(NumberRow, token)
            assert row is not None
            for k, v in values.items():
                setattr(row, k, v)
        else:
            session.add(NumberRow(token=token, **values))
    session.flush()


def log_events(session: Session, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        session.execute(insert(LifecycleEventRow), list(rows))
