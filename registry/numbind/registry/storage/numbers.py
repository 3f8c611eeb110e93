"""Numbers (per-token lifecycle state) and the lifecycle event log.

Lookups take `StoreToken`s (a request's token mapped to the store key, and its old form
while a re-key runs) and answer by the store-key value, with the form the row is stored
in; `save` writes every row in the store key, converting a row still in the old form in
place (one identity per number, never a second row).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import NumberState, now_us
from numbind.registry.storage import pgcopy, pgsets, signals
from numbind.registry.storage.db import driver_sql, marks
from numbind.registry.storage.models import LifecycleLogHeadRow
from sqlalchemy import select
from sqlalchemy.orm import Session

# A lifecycle_events row as log_events takes it (besides its seq).
_EVENT_COLUMNS = (
    "token",
    "key_id",
    "carrier_pk",
    "kind",
    "effective_us",
    "recorded_us",
    "applied",
    "revocation_id",
)

# A new numbers row as save builds it.
_NUMBER_COLUMNS = (
    "key_id",
    "carrier_pk",
    "state",
    "tenure_start_us",
    "last_reissued_us",
    "first_known_us",
    "last_effective_us",
    "updated_us",
    "token",
)

# A numbers row as _record takes it.
_SELECT = (
    "token, carrier_pk, state, tenure_start_us, last_reissued_us, first_known_us, last_effective_us"
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


def _forms(tokens: Iterable[StoreToken | bytes]) -> dict[bytes, bytes]:
    """Every form to look up -> the store-key value it stands for."""
    forms: dict[bytes, bytes] = {}
    for t in tokens:
        if isinstance(t, bytes):
            forms[t] = t
            continue
        forms[t.value] = t.value
        if t.old is not None:
            forms[t.old] = t.value
    return forms


def load_stored(
    session: Session, tokens: Iterable[StoreToken | bytes], *, lock: bool = False
) -> dict[bytes, tuple[bytes, NumberRecord]]:
    """Store-key value -> (the token its row is stored under, record); unknown numbers are
    absent. Both forms are asked in one statement, so the row is found in whichever form it
    is in; with `lock` on PostgreSQL the rows are locked FOR UPDATE (a re-key batch on the
    same row then waits, and skips it once this transaction converted it)."""
    forms = _forms(tokens)
    wanted = list(forms)
    out: dict[bytes, tuple[bytes, NumberRecord]] = {}
    conn = session.connection()
    if wanted and conn.dialect.name == "postgresql":
        # One statement for the batch (a 10,000-number report took 20 of 500 each).
        for row in pgsets.numbers_of(conn, wanted, lock=lock):
            out[forms[bytes(row[0])]] = (bytes(row[0]), _record(row))
        if lock:
            # A row a re-key converted (and committed) while this statement waited for its
            # lock is missed by the join: PostgreSQL re-checks the row's new version
            # against the same `unnest` row, its old form. A new statement sees it
            # converted. Only numbers with two forms (a re-key in progress) can be missed
            # so; unknown numbers with one form are not read twice.
            two = {v for f, v in forms.items() if f != v}
            moved = [f for f, v in forms.items() if v in two and v not in out]
            if moved:
                for row in pgsets.numbers_of(conn, moved, lock=True):
                    out[forms[bytes(row[0])]] = (bytes(row[0]), _record(row))
        return out
    # SQLite: its one writer serialises reports and re-key batches, so `lock` needs no
    # statement of its own. Driver SQL: a holder query reads one number here twice.
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        sql = f"SELECT {_SELECT} FROM numbers WHERE token IN ({marks(len(part))})"
        for row in conn.exec_driver_sql(sql, tuple(part)):
            out[forms[row[0]]] = (row[0], _record(row))
    return out


def load(
    session: Session, tokens: Iterable[StoreToken | bytes], *, lock: bool = False
) -> dict[bytes, NumberRecord]:
    """Records by store-key value for the given tokens (absent ones are unknown numbers)."""
    return {v: rec for v, (_, rec) in load_stored(session, tokens, lock=lock).items()}


def get(session: Session, token: StoreToken | bytes) -> NumberRecord | None:
    value = token if isinstance(token, bytes) else token.value
    return load(session, [token]).get(value)


def save(
    session: Session,
    records: dict[bytes, NumberRecord],
    stored: dict[bytes, bytes],
    key_id: str,
) -> None:
    """Write final states under the store key `key_id`: store-key value -> record. `stored`
    maps the values that already have a row to the token that row is stored under (an old
    form is converted in place); the rest are inserted."""
    now = now_us()
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    for token, r in records.items():
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
        if token in stored:
            updates.append((token, *values, stored[token]))
        else:
            inserts.append((*values, token))
    conn = session.connection()
    if inserts and conn.dialect.name == "postgresql":
        pgcopy.copy_rows(conn, "numbers", _NUMBER_COLUMNS, inserts)  # one statement
    elif inserts:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                f"INSERT INTO numbers ({', '.join(_NUMBER_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            inserts,
        )
    if updates and conn.dialect.name == "postgresql":
        pgsets.update_numbers(conn, updates)  # one statement for the batch
    elif updates:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                "UPDATE numbers SET token = ?, key_id = ?, carrier_pk = ?, state = ?,"
                " tenure_start_us = ?, last_reissued_us = ?, first_known_us = ?,"
                " last_effective_us = ?, updated_us = ? WHERE token = ?",
            ),
            updates,
        )


def log_events(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Append to the lifecycle log: each row gets the next sequence. The head row is
    locked until commit, so sequences become visible in order and without gaps (what a
    follower reading `seq > cursor` relies on)."""
    if not rows:
        return
    stmt = select(LifecycleLogHeadRow).where(LifecycleLogHeadRow.id == 1).with_for_update()
    head = session.scalars(stmt).one()
    first = head.head + 1
    head.head = head.head + len(rows)
    head.head_recorded_us = int(rows[-1]["recorded_us"])  # type: ignore[call-overload]
    # Driver SQL: the ORM's per-row processing was a tenth of a 10,000-number report at the
    # hub, and again at every member applying it. On PostgreSQL one COPY, where executemany
    # was a statement per row; SQLite keeps executemany (no round trips to save).
    conn = session.connection()
    values = [(*(row[c] for c in _EVENT_COLUMNS), seq) for seq, row in enumerate(rows, first)]
    if conn.dialect.name == "postgresql":
        pgcopy.copy_rows(conn, "lifecycle_events", (*_EVENT_COLUMNS, "seq"), values)
    else:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                f"INSERT INTO lifecycle_events ({', '.join(_EVENT_COLUMNS)}, seq)"
                f" VALUES ({', '.join('?' * (len(_EVENT_COLUMNS) + 1))})",
            ),
            values,
        )
    # Followers of the log (members) held by other processes of this registry wake on it.
    signals.announce(session, signals.FEED, [signals.LOG_CHANNEL])
