"""The store's key map: store key and epoch, the deltas of live older keys, re-key jobs.

The store side of a rotation. It never sees a key, only the delta the token service hands
over (see registry.domain.keymap); `begin_rekey` is the whole rotation on this side, in
the transaction that also makes the new key active.
"""

from __future__ import annotations

from numbind.protocol import rekey as rekey_algebra
from numbind.registry.domain.keymap import KeyView, RekeyState, RekeyStatus
from numbind.registry.domain.types import KeyState
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import signals
from numbind.registry.storage.models import (
    BindingRow,
    KeyDeltaRow,
    NumberRow,
    RekeyRow,
    StoreStateRow,
    TokenKeyRow,
)
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

__all__ = [
    "KeyMapChanged",
    "adopt_store_key",
    "begin_rekey",
    "check_epoch",
    "delta_keys",
    "ensure_store_key",
    "forget_key",
    "keys_without_delta",
    "latest_rekey",
    "load_view",
    "put_delta",
    "require_no_rekey",
    "store_key",
]


class KeyMapChanged(Exception):
    """The key map moved on since the request mapped its tokens: map them again."""


def _state(session: Session, *, lock: bool = False) -> StoreStateRow:
    stmt = select(StoreStateRow).where(StoreStateRow.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:  # created by migration 0002; only a hand-made schema lacks it
        raise FailedPrecondition("store_state is missing; run `numbind admin migrate`")
    return row


def _status(row: RekeyRow) -> RekeyStatus:
    rate = 0.0
    if row.run_started_us is not None and row.updated_us > row.run_started_us:
        rate = (row.rows_done - row.run_rows_base) / ((row.updated_us - row.run_started_us) / 1e6)
    return RekeyStatus(
        id=row.id,
        from_key_id=row.from_key_id,
        to_key_id=row.to_key_id,
        state=RekeyState(row.state),
        rows_total=row.rows_total,
        rows_done=row.rows_done,
        rows_per_second=max(0.0, rate),
        started_us=row.started_us,
        finished_us=row.finished_us,
    )


def latest_rekey(session: Session) -> RekeyStatus | None:
    row = session.scalars(select(RekeyRow).order_by(RekeyRow.id.desc()).limit(1)).first()
    return None if row is None else _status(row)


def load_view(session: Session) -> KeyView:
    state = _state(session)
    live: set[str] = set()
    retired: set[str] = set()
    for key_id, key_state in session.execute(select(TokenKeyRow.key_id, TokenKeyRow.state)):
        (retired if key_state == int(KeyState.RETIRED) else live).add(key_id)
    deltas = {r.key_id: r.delta for r in session.scalars(select(KeyDeltaRow))}
    rekey = latest_rekey(session)
    back = None
    if rekey is not None and rekey.running and rekey.from_key_id in deltas:
        back = rekey_algebra.invert_delta(deltas[rekey.from_key_id])
    return KeyView(
        epoch=state.epoch,
        store_key_id=state.store_key_id or "",
        live=frozenset(live),
        retired=frozenset(retired),
        deltas=deltas,
        rekey=rekey,
        back=back,
    )


def check_epoch(session: Session, epoch: int, *, share: bool) -> None:
    """Raise KeyMapChanged unless the key map is still at `epoch`.

    With `share` (write transactions) on PostgreSQL the row is read FOR SHARE: a rotation
    (which updates it) waits for this transaction to commit, so nothing this transaction
    writes can land under a key the store has started re-keying away from. On SQLite the
    write transaction already excludes every other writer.
    """
    # Driver SQL: every transaction that maps tokens runs this first (a holder query three
    # times across the federation), and building and running it through the ORM cost
    # ~0.3 ms against ~0.05 ms.
    conn = session.connection()
    lock = " FOR SHARE" if share and conn.dialect.name == "postgresql" else ""
    current = conn.exec_driver_sql(f"SELECT epoch FROM store_state WHERE id = 1{lock}").scalar()
    if current != epoch:
        raise KeyMapChanged(f"key map epoch {epoch} -> {current}")


def _bump(session: Session, state: StoreStateRow) -> None:
    state.epoch += 1
    signals.announce(session, signals.KEYS)


def require_no_rekey(session: Session) -> None:
    """Lock the key map for a rotation; refuse while a re-key is still running."""
    _state(session, lock=True)
    latest = latest_rekey(session)
    if latest is not None and latest.running:
        raise FailedPrecondition(
            f"rotate: a {latest.describe()} is still in progress; rotate again after it "
            "finishes (see `numbind admin stats`)"
        )


def begin_rekey(
    session: Session, from_key_id: str, to_key_id: str, delta: bytes, now: int
) -> RekeyStatus:
    """The store side of a rotation, in the caller's transaction: `to_key_id` becomes the
    store key, `delta` maps `from_key_id` to it, every older live key's delta is composed
    with it, and a re-key job starts. MUST follow `require_no_rekey` in the same
    transaction."""
    state = _state(session, lock=True)
    for row in session.scalars(select(KeyDeltaRow).with_for_update()):
        row.delta = rekey_algebra.compose_deltas(row.delta, delta)
        row.to_key_id = to_key_id
    session.add(KeyDeltaRow(key_id=from_key_id, to_key_id=to_key_id, delta=delta))
    job = RekeyRow(
        from_key_id=from_key_id,
        to_key_id=to_key_id,
        state=int(RekeyState.RUNNING),
        table_no=0,
        cursor=None,
        rows_total=None,
        rows_done=0,
        started_us=now,
        run_rows_base=0,
        updated_us=now,
    )
    session.add(job)
    state.store_key_id = to_key_id
    _bump(session, state)
    session.flush()
    return _status(job)


def forget_key(session: Session, key_id: str) -> None:
    """A key was retired: drop its delta, so its tokens can no longer be mapped (and a
    leak of the old key no longer yields the store key). Refused while rows are still
    being re-keyed away from it."""
    state = _state(session, lock=True)
    latest = latest_rekey(session)
    if latest is not None and latest.running and latest.from_key_id == key_id:
        raise FailedPrecondition(
            f"key_id: {key_id} cannot be retired during the {latest.describe()}; "
            "retire it after the re-key is done (see `numbind admin stats`)"
        )
    session.execute(delete(KeyDeltaRow).where(KeyDeltaRow.key_id == key_id))
    _bump(session, state)


def ensure_store_key(session: Session, key_id: str) -> None:
    """A fresh store adopts its first key as the store key."""
    state = _state(session, lock=True)
    if state.store_key_id is None:
        state.store_key_id = key_id
        _bump(session, state)


def keys_without_delta(session: Session) -> tuple[str, list[str]]:
    """(store key, live older keys that have no delta to it)."""
    state = _state(session)
    have = set(session.scalars(select(KeyDeltaRow.key_id)))
    live = session.scalars(
        select(TokenKeyRow.key_id).where(TokenKeyRow.state != int(KeyState.RETIRED))
    )
    store = state.store_key_id or ""
    return store, sorted(k for k in live if k != store and k not in have)


def adopt_store_key(session: Session, key_id: str) -> None:
    """A federation member's store takes the token service's key as its store key; the
    key it had (its own, from `admin init`) may go only while nothing is stored under it."""
    state = _state(session, lock=True)
    if state.store_key_id == key_id:
        return
    if state.store_key_id is not None and _holds_tokens(session):
        raise FailedPrecondition(
            f"token keys: this store holds numbers or bindings under its own key "
            f"{state.store_key_id}, which the federation's token service does not know; a "
            "member joins with an empty store"
        )
    session.execute(delete(KeyDeltaRow))
    state.store_key_id = key_id
    _bump(session, state)


def _holds_tokens(session: Session) -> bool:
    for model in (NumberRow, BindingRow):
        if session.scalars(select(model.token).limit(1)).first() is not None:
            return True
    return False


def store_key(session: Session) -> str:
    """The store key ("" on a store that has none yet)."""
    return _state(session).store_key_id or ""


def delta_keys(session: Session) -> set[str]:
    return set(session.scalars(select(KeyDeltaRow.key_id)))


def put_delta(session: Session, key_id: str, to_key_id: str, delta: bytes) -> None:
    state = _state(session, lock=True)
    if state.store_key_id != to_key_id:
        raise FailedPrecondition(f"delta for {key_id}: the store key is no longer {to_key_id}")
    session.merge(KeyDeltaRow(key_id=key_id, to_key_id=to_key_id, delta=delta))
    _bump(session, state)
