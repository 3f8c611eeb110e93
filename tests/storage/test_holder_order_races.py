"""Two holder revocations of one number at once (through two registry processes, say)
decide one after the other: the number's row is locked before the bindings are read.

Both once read the binding unlocked; where it was REVOKING with an overdue order, both
asked again and it got two new orders (a state compare cannot see this: the state is
REVOKING before and after). PostgreSQL only: on SQLite a write transaction holds the one
write lock from its start."""

from __future__ import annotations

import threading
from collections.abc import Callable

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    EventCause,
    EventKind,
    NumberState,
    RevocationScope,
    Token,
)
from numbind.registry.services.holder_orders import order_holder_revocation
from numbind.registry.storage import bindings, numbers, orders, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import OrderRow
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.storage._locks import until_one_waits_on_a_lock
from tests.tokens import token_in_bucket

T0 = 1_700_000_000_000_000
TOKEN = Token("0123456789abcdef", token_in_bucket(5))


def _overdue_binding(db: Database) -> int:
    """A number, one binding to it, and that binding's revocation order past its deadline;
    returns the carrier's pk."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "p1").pk)
    record = NumberRecord(carrier, NumberState.ACTIVE, T0, None, T0, T0)
    db.transact(lambda s: numbers.save(s, {TOKEN.value: record}, {}, TOKEN.key_id))
    new = [Binding(TOKEN, b"acct", T0, BindingKind.LOGIN)]
    db.transact(lambda s: bindings.upsert(s, bindings.prepare(plat, new, T0)))
    (read,) = db.transact(lambda s: bindings.bindings_for_token(s, TOKEN.value), write=False)

    def overdue(s: Session) -> None:
        rid = orders.new_revocation(s, EventCause.HOLDER_REQUEST, carrier)
        order = orders.NewOrder(read, EventKind.REVOKE, EventCause.HOLDER_REQUEST, None)
        orders.append(s, rid, [order], -60.0)  # its deadline a minute ago

    db.transact(overdue)
    return carrier


def _asking(carrier: int, then: Callable[[], object] = lambda: None) -> Callable[[Session], int]:
    """One holder revocation of the number, as a transaction: its new orders. `then` runs
    after the orders are written, before the commit."""

    def ask(s: Session) -> int:
        rid = orders.new_revocation(s, EventCause.HOLDER_REQUEST, carrier)
        n, _ = order_holder_revocation(
            s, rid, StoreToken(TOKEN.value), RevocationScope.ALL, T0, None, 3600.0
        )
        then()
        return n

    return ask


def test_two_retries_of_one_overdue_order_at_once_ask_once(pg_db: Database) -> None:
    carrier = _overdue_binding(pg_db)
    first_holds = threading.Event()
    release = threading.Event()
    got: dict[str, int] = {}

    def hold() -> None:
        first_holds.set()
        release.wait(10)  # committed only once the second has started

    def first() -> None:
        got["first"] = pg_db.transact(_asking(carrier, hold))

    thread = threading.Thread(target=first)
    thread.start()
    assert first_holds.wait(10)
    second = threading.Thread(
        target=lambda: got.__setitem__("second", pg_db.transact(_asking(carrier)))
    )
    second.start()
    # The second blocks behind the first: on the number (now), or (before) only once it
    # had read the binding and came to lock it.
    assert until_one_waits_on_a_lock(pg_db, 10)
    release.set()
    thread.join(10)
    second.join(10)
    assert got == {"first": 1, "second": 0}
    total = pg_db.transact(
        lambda s: s.execute(select(func.count()).select_from(OrderRow)).scalar_one(),
        write=False,
    )
    assert total == 2  # the overdue order and one new one
