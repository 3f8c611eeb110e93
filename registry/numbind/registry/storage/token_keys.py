"""Token keys as the database knows them: public halves and states, never a secret."""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.domain.types import KeyState
from numbind.registry.errors import FailedPrecondition, NotFound
from numbind.registry.storage.models import TokenKeyRow
from sqlalchemy import select, update
from sqlalchemy.orm import Session

__all__ = ["KeyRecord", "activate", "all_keys", "any_key", "retire", "sync"]


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    public_key: bytes
    state: KeyState
    created_us: int


def all_keys(session: Session) -> list[KeyRecord]:
    """Every key, oldest first."""
    return [
        KeyRecord(r.key_id, r.public_key, KeyState(r.state), r.created_us)
        for r in session.scalars(select(TokenKeyRow).order_by(TokenKeyRow.created_us))
    ]


def any_key(session: Session) -> bool:
    return session.scalars(select(TokenKeyRow.key_id).limit(1)).first() is not None


def activate(session: Session, key_id: str, public_key: bytes, now: int) -> str | None:
    """Add a key as the one ACTIVE key; the previous active key (returned, if any) turns
    EVALUATE_ONLY."""
    previous = session.scalars(
        select(TokenKeyRow.key_id).where(TokenKeyRow.state == int(KeyState.ACTIVE))
    ).first()
    session.execute(
        update(TokenKeyRow)
        .where(TokenKeyRow.state == int(KeyState.ACTIVE))
        .values(state=int(KeyState.EVALUATE_ONLY), rotated_us=now)
    )
    session.add(
        TokenKeyRow(
            key_id=key_id, public_key=public_key, state=int(KeyState.ACTIVE), created_us=now
        )
    )
    session.flush()
    return previous


def retire(session: Session, key_id: str, now: int) -> bool:
    """EVALUATE_ONLY -> RETIRED; True if it changed, False if already retired."""
    row = session.get(TokenKeyRow, key_id, with_for_update=True)
    if row is None:
        raise NotFound(f"key_id: no key {key_id!r}")
    if row.state == int(KeyState.ACTIVE):
        raise FailedPrecondition(f"key_id: {key_id} is active; rotate before retiring it")
    if row.state == int(KeyState.RETIRED):
        return False
    row.state = int(KeyState.RETIRED)
    row.retired_us = now
    return True


def sync(session: Session, keys: list[tuple[str, bytes, KeyState, int]]) -> None:
    """Hold exactly the token service's keys as it announced them (a federation member,
    whose token service is another registry's): (key id, public key, state, created).
    A key this store holds and the token service does not is dropped."""
    have = {r.key_id: r for r in session.scalars(select(TokenKeyRow).with_for_update())}
    wanted = {k[0] for k in keys}
    for key_id, row in have.items():
        if key_id not in wanted:
            session.delete(row)
    for key_id, public_key, state, created_us in keys:
        held = have.get(key_id)
        if held is None:
            session.add(
                TokenKeyRow(
                    key_id=key_id, public_key=public_key, state=int(state), created_us=created_us
                )
            )
        elif held.state != int(state):
            held.state = int(state)
    session.flush()
