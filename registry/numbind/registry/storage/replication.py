"""The lifecycle log as members follow it: entries by sequence, the head, the key map a
follower needs, and both ends' positions (a member's cursor, the hub's record of acks)."""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.domain.types import now_us
from numbind.registry.storage.models import (
    KeyDeltaRow,
    LifecycleEventRow,
    LifecycleLogHeadRow,
    ReplicationAckRow,
    ReplicationCursorRow,
    StoreStateRow,
    TokenKeyRow,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

__all__ = [
    "Cursor",
    "Entry",
    "HubKeys",
    "acks",
    "advance",
    "cursor",
    "cursor_if_any",
    "head",
    "hub_keys",
    "read",
    "record_ack",
    "recorded_at",
]


@dataclass(frozen=True)
class Entry:
    seq: int
    key_id: str
    token: bytes
    kind: int
    effective_us: int
    recorded_us: int
    applied: bool
    # The hub's revocation this event triggered ("" if none).
    revocation_id: str = ""


@dataclass(frozen=True)
class HubKeys:
    """The hub's key map: its store key, each live older key's delta to it, every key."""

    epoch: int
    store_key_id: str
    deltas: tuple[tuple[str, str, bytes], ...]
    keys: tuple[tuple[str, bytes, int, int], ...]  # key_id, public key, state, created_us


@dataclass(frozen=True)
class Cursor:
    applied_seq: int
    applied_recorded_us: int
    head_seq: int
    head_recorded_us: int


def read(session: Session, after_seq: int, limit: int) -> list[Entry]:
    rows = session.execute(
        select(
            LifecycleEventRow.seq,
            LifecycleEventRow.key_id,
            LifecycleEventRow.token,
            LifecycleEventRow.kind,
            LifecycleEventRow.effective_us,
            LifecycleEventRow.recorded_us,
            LifecycleEventRow.applied,
            LifecycleEventRow.revocation_id,
        )
        .where(LifecycleEventRow.seq > after_seq)
        .order_by(LifecycleEventRow.seq)
        .limit(limit)
    )
    return [
        Entry(int(r[0] or 0), r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7] or "") for r in rows
    ]


def head(session: Session) -> tuple[int, int]:
    """(last sequence handed out, when it was recorded)."""
    row = session.get(LifecycleLogHeadRow, 1)
    return (0, 0) if row is None else (row.head, row.head_recorded_us)


def recorded_at(session: Session, seq: int) -> int | None:
    return session.scalar(select(LifecycleEventRow.recorded_us).where(LifecycleEventRow.seq == seq))


def hub_keys(session: Session) -> HubKeys:
    state = session.get(StoreStateRow, 1)
    deltas = tuple(
        (r.key_id, r.to_key_id, r.delta)
        for r in session.scalars(select(KeyDeltaRow).order_by(KeyDeltaRow.key_id))
    )
    keys = tuple(
        (r.key_id, r.public_key, r.state, r.created_us)
        for r in session.scalars(select(TokenKeyRow).order_by(TokenKeyRow.created_us))
    )
    return HubKeys(
        epoch=0 if state is None else state.epoch,
        store_key_id="" if state is None or state.store_key_id is None else state.store_key_id,
        deltas=deltas,
        keys=keys,
    )


# -- the member's side -------------------------------------------------------------------


def cursor(session: Session, source: str, *, lock: bool = False) -> Cursor:
    """The cursor (all zero before the first entry)."""
    return cursor_if_any(session, source, lock=lock) or Cursor(0, 0, 0, 0)


def cursor_if_any(session: Session, source: str, *, lock: bool = False) -> Cursor | None:
    stmt = select(ReplicationCursorRow).where(ReplicationCursorRow.source == source)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:
        return None
    return Cursor(row.applied_seq, row.applied_recorded_us, row.head_seq, row.head_recorded_us)


def advance(
    session: Session,
    source: str,
    *,
    applied_seq: int | None,
    applied_recorded_us: int | None,
    head_seq: int,
    head_recorded_us: int,
) -> None:
    """Move the cursor (applied_seq None: only note the hub's head)."""
    row = session.get(ReplicationCursorRow, source, with_for_update=True)
    now = now_us()
    if row is None:
        row = ReplicationCursorRow(
            source=source,
            applied_seq=0,
            applied_recorded_us=0,
            head_seq=0,
            head_recorded_us=0,
            updated_us=now,
        )
        session.add(row)
    if applied_seq is not None and applied_seq > row.applied_seq:
        row.applied_seq = applied_seq
        row.applied_recorded_us = applied_recorded_us or 0
    if head_seq >= row.head_seq:
        row.head_seq = head_seq
        row.head_recorded_us = head_recorded_us
    row.updated_us = now


# -- the hub's side ----------------------------------------------------------------------


def record_ack(session: Session, member: str, seq: int) -> None:
    """Acks move forward only."""
    row = session.get(ReplicationAckRow, member, with_for_update=True)
    if row is None:
        session.add(ReplicationAckRow(member=member, acked_seq=seq, acked_us=now_us()))
    elif seq > row.acked_seq:
        row.acked_seq = seq
        row.acked_us = now_us()


def acks(session: Session) -> dict[str, int]:
    return {r.member: r.acked_seq for r in session.scalars(select(ReplicationAckRow))}
