"""Writes that decide on a binding's state read without a lock check it still holds when
they write, and run their transaction again when it does not (storage.db.StaleRead).

Each test reads, lets another transaction change the row, then writes from the old read:
the interleaving two registry processes produced by chance (a reissue's order written
over a withdrawal, a holder's second revocation of one binding, a publish or withdrawal
written over a revocation or an ack). On SQLite a write transaction reads under its own
write lock (BEGIN IMMEDIATE), so only PostgreSQL can interleave; the compare-and-set runs
on both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventCause,
    EventKind,
    Token,
)
from numbind.registry.errors import Unavailable
from numbind.registry.storage import bindings, orders, principals
from numbind.registry.storage.db import Database, StaleRead
from numbind.registry.storage.models import BindingRow, OrderRow
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.tokens import token_in_bucket

T0 = 1_700_000_000_000_000
TOKEN = Token("0123456789abcdef", token_in_bucket(3))


def _one_binding(db: Database) -> tuple[int, int, bindings.StoredBinding]:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "p1").pk)
    new = [Binding(TOKEN, b"acct", T0, BindingKind.LOGIN)]
    db.transact(lambda s: bindings.upsert(s, bindings.prepare(plat, new, T0)))
    (stored,) = db.transact(lambda s: bindings.bindings_for_token(s, TOKEN.value), write=False)
    assert stored.state == BindingState.ACTIVE
    return carrier, plat, stored


def _set_state(db: Database, state: BindingState) -> None:
    db.transact(lambda s: s.execute(update(BindingRow).values(state=int(state))))


def _state_and_orders(db: Database) -> tuple[int, int]:
    return db.transact(
        lambda s: (
            s.execute(select(BindingRow.state)).scalar_one(),
            s.execute(select(func.count()).select_from(OrderRow)).scalar_one(),
        ),
        write=False,
    )


def _revoke_from(carrier: int, read: bindings.StoredBinding) -> Callable[[Session], Any]:
    def revoke(s: Session) -> Any:
        rid = orders.new_revocation(s, EventCause.HOLDER_REQUEST, carrier)
        new = [orders.NewOrder(read, EventKind.REVOKE, EventCause.HOLDER_REQUEST, None)]
        return orders.append(s, rid, new, 60.0)

    return revoke


@pytest.mark.parametrize("since", [BindingState.WITHDRAWN, BindingState.REVOKING])
def test_an_order_is_not_written_over_a_state_changed_since_its_binding_was_read(
    pg_db: Database, since: BindingState
) -> None:
    """WITHDRAWN: a withdrawal committed between a reissue's read and its lock came back
    REVOKING with an order. REVOKING: two holder revocations of one binding at once both
    ordered it."""
    carrier, _, read = _one_binding(pg_db)
    _set_state(pg_db, since)
    with pytest.raises(StaleRead), pg_db.session() as s:
        _revoke_from(carrier, read)(s)
    assert _state_and_orders(pg_db) == (int(since), 0)


def test_a_stale_read_runs_the_transaction_again_on_what_the_winner_wrote(
    pg_db: Database,
) -> None:
    carrier, _, first = _one_binding(pg_db)
    _set_state(pg_db, BindingState.WITHDRAWN)  # after the first attempt's read, as it were
    attempts: list[int] = []

    def decide_then_revoke(s: Session) -> set[int]:
        attempts.append(1)
        # The first attempt decides on the read it made before the withdrawal; a retry
        # reads again and finds no live binding left to revoke.
        live = [first] if len(attempts) == 1 else bindings.bindings_for_token(s, TOKEN.value)
        return _revoke_from(carrier, live[0])(s) if live else set()

    assert pg_db.transact(decide_then_revoke) == set()
    assert len(attempts) == 2
    assert _state_and_orders(pg_db) == (int(BindingState.WITHDRAWN), 0)


def test_a_stale_read_that_keeps_losing_is_unavailable_not_an_error(pg_db: Database) -> None:
    def always_stale(_: Session) -> None:
        raise StaleRead("binding 1: changed")

    with pytest.raises(Unavailable, match="contention"):
        pg_db.transact(always_stale)


@pytest.mark.parametrize("since", [BindingState.REVOKING, BindingState.REVOKED])
def test_a_publish_is_not_written_over_a_revocation_since_its_lookup(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch, since: BindingState
) -> None:
    """A republish with a change read ACTIVE, then wrote ACTIVE back over the REVOKING of
    a reissue (which then ordered the binding again) or over the REVOKED of an ack (the
    binding stuck REVOKING with no open order)."""
    _, plat, _ = _one_binding(pg_db)
    lookup = bindings._lookup

    def lookup_then_lose(*args: Any) -> Any:
        rows = list(lookup(*args))
        _set_state(pg_db, since)  # committed by another transaction after the read
        return iter(rows)

    monkeypatch.setattr(bindings, "_lookup", lookup_then_lose)
    changed = [Binding(TOKEN, b"acct", T0, BindingKind.PAYMENT)]
    with pytest.raises(StaleRead), pg_db.session() as s:
        bindings.upsert(s, bindings.prepare(plat, changed, T0 + 1))
    assert _state_and_orders(pg_db)[0] == int(since)


def test_a_withdrawal_is_not_written_over_a_revocation_since_its_lookup(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plat, _ = _one_binding(pg_db)
    lookup = bindings._lookup

    def lookup_then_lose(*args: Any) -> Any:
        rows = list(lookup(*args))
        _set_state(pg_db, BindingState.REVOKED)
        return iter(rows)

    monkeypatch.setattr(bindings, "_lookup", lookup_then_lose)
    with pytest.raises(StaleRead), pg_db.session() as s:
        bindings.withdraw(s, plat, [(StoreToken(TOKEN.value), b"acct")], T0 + 1)
    assert _state_and_orders(pg_db)[0] == int(BindingState.REVOKED)
