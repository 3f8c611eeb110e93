"""The reissue path's writes are set-based on PostgreSQL: the statements a batch of orders,
its deliveries, its acks, its log leaves and its lifecycle events execute do not grow with
the batch (storage.pgsets, storage.pgcopy), and every row still lands. On SQLite
(executemany, no round trips) only the outcome is checked."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from numbind.protocol.log_entries import canonical
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.domain.types import (
    BindingState,
    EventCause,
    EventKind,
    NumberState,
    OrderState,
)
from numbind.registry.storage import (
    feed,
    log,
    numbers,
    order_acks,
    orders,
    pgcopy,
    principals,
)
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow, LifecycleEventRow, OrderRow
from sqlalchemy import event, func, select, update

from tests.storage.test_feed_store import _binding

SIZE = 60


_TABLES = (
    "orders",
    "bindings",
    "log_leaves",
    "log_nodes",
    "lifecycle_events",
    "numbers",
)


class _Counter:
    """Statements on the reissue path's tables executed on the write engine, an executemany
    counting one per row, a COPY (storage.pgcopy.copy_rows) one."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._engine = db.write_engine
        event.listen(self._engine, "before_cursor_execute", self._on)
        copy_rows = pgcopy.copy_rows

        def counted(conn: Any, table: str, columns: Any, rows: Any, **kw: Any) -> None:
            self.count += 1
            copy_rows(conn, table, columns, rows, **kw)

        monkeypatch.setattr(pgcopy, "copy_rows", counted)

    def _on(self, conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if any(table in stmt for table in _TABLES):
            self.count += len(params) if many else 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on)


def test_orders_deliveries_and_acks_take_one_statement_per_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "ps").pk)
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(SIZE)])
    pg = db.write_engine.dialect.name == "postgresql"
    counter = _Counter(db, monkeypatch)
    try:

        def append(s: Any) -> str:
            rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in stored]
            orders.append(s, rid, new, 60.0)
            return rid

        rid = db.transact(append)
        appended = counter.count
        if pg:  # lock setting REVOKING, orders COPY (feed places in it): none per row
            assert appended == 2, appended
        items = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE))

        def statements(fn: Any) -> int:
            before = counter.count
            db.transact(fn)
            return counter.count - before

        def mark(s: Any) -> None:
            feed.mark_delivered(s, [(i.order_pk, i.token) for i in items])

        def ack(outcome: int, reason: str, token: bytes | None = None) -> Any:
            def act(s: Any) -> None:
                found = order_acks.orders_by_id(s, [i.order_id for i in items]).values()
                targets = [replace(t, token=token) if token else t for t in found]
                order_acks.record_acks(
                    s, [(t, int(OrderState.DONE), outcome, reason) for t in targets]
                )

            return act

        delivered = statements(mark)
        acked = statements(ack(1, ""))
        # Marking orders no longer open: none matches at its token, so all go to the by-pk
        # fallback, which is one statement too (and leaves them DONE).
        remarked = statements(mark)
        # Acks of orders read under a token their rows no longer hold (as after a re-key):
        # orders and bindings are matched by pk alone, one statement each.
        moved = statements(ack(2, "moved", b"\xff" * 32))
    finally:
        counter.close()

    states = db.transact(
        lambda s: s.execute(
            select(OrderRow.state, func.count())
            .where(OrderRow.revocation_id == rid)
            .group_by(OrderRow.state)
        ).all()
    )
    assert states == [(int(OrderState.DONE), SIZE)]
    outcomes = db.transact(
        lambda s: s.execute(
            select(OrderRow.outcome, OrderRow.reason, func.count())
            .where(OrderRow.revocation_id == rid)
            .group_by(OrderRow.outcome, OrderRow.reason)
        ).all()
    )
    assert outcomes == [(2, "moved", SIZE)]
    revoked = db.transact(
        lambda s: s.scalar(
            select(func.count()).where(BindingRow.state == int(BindingState.REVOKED))
        )
    )
    assert revoked == SIZE
    assert len(items) == SIZE
    if pg:  # marks; the ack's lookup, order acks, binding states; marks and their fallback
        assert delivered == 1, delivered
        assert acked == 3, acked
        assert remarked == 2, remarked
        assert moved == 5, moved  # lookup; acks, by pk; binding states, by pk


def test_log_leaves_lifecycle_events_and_new_numbers_take_one_statement_per_table(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    leaves = [
        LogLeaf("order", f"order-{i}", None, canonical({"t": "order", "id": f"order-{i}"}))
        for i in range(SIZE)
    ]
    events: list[dict[str, object]] = [
        {
            "token": bytes([i]) * 32,
            "key_id": "k1",
            "carrier_pk": carrier,
            "kind": 1,
            "effective_us": i,
            "recorded_us": 100 + i,
            "applied": True,
            "revocation_id": None,
        }
        for i in range(SIZE)
    ]
    counter = _Counter(db, monkeypatch)
    try:
        db.transact(lambda s: log.append(s, leaves))
        logged = counter.count
        before = counter.count
        db.transact(lambda s: numbers.log_events(s, events))
        lifecycle = counter.count - before
        before = counter.count
        records = {
            bytes([i]) * 32: NumberRecord(carrier, NumberState.ACTIVE, i, None, i, i)
            for i in range(SIZE)
        }
        db.transact(lambda s: numbers.save(s, records, {}, "k1"))
        saved = counter.count - before
    finally:
        counter.close()
    assert db.transact(log.head, write=False).size == SIZE
    seqs = db.transact(
        lambda s: list(s.scalars(select(LifecycleEventRow.seq).order_by(LifecycleEventRow.seq)))
    )
    assert seqs == list(range(1, SIZE + 1))  # gap-free from the head
    assert db.transact(lambda s: numbers.load(s, list(records))) == records
    if db.write_engine.dialect.name == "postgresql":
        assert logged == 2, logged  # leaves, subtree hashes
        assert lifecycle == 1, lifecycle
        assert saved == 1, saved


def test_a_reports_numbers_load_and_lock_in_one_statement_in_either_form(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report's numbers, asked by store-key value and old form together, are read (and
    locked) in one statement on PostgreSQL, where batches of 500 took 20 for 10,000; each
    is found in whichever form its row is stored."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    records = {
        i.to_bytes(2, "big") * 16: NumberRecord(carrier, NumberState.ACTIVE, i, None, i, i)
        for i in range(SIZE * 10)
    }
    db.transact(lambda s: numbers.save(s, records, {}, "k1"))
    # Even numbers asked by their old form (a re-key in progress), odd ones as stored.
    asked = [
        StoreToken(b"new" + t[3:], old=t) if i % 2 == 0 else StoreToken(t)
        for i, t in enumerate(records)
    ]
    asked.append(StoreToken(b"\xff" * 31 + b"\x00"))  # unknown: absent
    counter = _Counter(db, monkeypatch)
    try:
        found = db.transact(lambda s: numbers.load_stored(s, asked, lock=True))
    finally:
        counter.close()
    assert found == {
        st.value: (st.old if st.old is not None else st.value, records[st.old or st.value])
        for st in asked[:-1]
    }
    if db.write_engine.dialect.name == "postgresql":
        assert counter.count == 1, counter.count


# PostgreSQL only: SQLite's single writer excludes a re-key during the append.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_append_locks_a_binding_a_rekey_moved_by_pk_and_revokes_only_revoke_orders(
    db: Database,
) -> None:
    """PostgreSQL's one statement both locks the bindings and sets REVOKING (pgsets
    lock_bindings): a binding whose token changed since it was read is found by pk alone,
    set REVOKING too, and its order takes the token its row holds now; a notice's binding
    is locked but keeps its state."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cs").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "ps").pk)
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(3)])
    new_token = b"\x01" * 32
    # A re-key's conversion of binding 0 after the caller read it.
    db.transact(
        lambda s: s.execute(
            update(BindingRow).where(BindingRow.pk == stored[0].pk).values(token=new_token)
        )
    )

    def append(s: Any) -> str:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        kinds = (EventKind.REVOKE, EventKind.REVOKE, EventKind.NUMBER_DEACTIVATED)
        new = [
            orders.NewOrder(b, kind, EventCause.REISSUED, 1)
            for b, kind in zip(stored, kinds, strict=True)
        ]
        orders.append(s, rid, new, 60.0)
        return rid

    rid = db.transact(append)
    states = dict(db.transact(lambda s: s.execute(select(BindingRow.pk, BindingRow.state)).all()))
    assert states == {
        stored[0].pk: int(BindingState.REVOKING),
        stored[1].pk: int(BindingState.REVOKING),
        stored[2].pk: int(BindingState.ACTIVE),
    }
    tokens = dict(
        db.transact(
            lambda s: s.execute(
                select(OrderRow.binding_pk, OrderRow.token).where(OrderRow.revocation_id == rid)
            ).all()
        )
    )
    assert tokens[stored[0].pk] == new_token
    assert tokens[stored[1].pk] == stored[1].binding.token.value
