"""An ack's order lookup with routing hints (storage.order_acks.orders_by_id): on PostgreSQL
an order id with its token probes one partition, and a hint never changes the answer — a
missing or wrong one falls back to the lookup by id alone. With hints, `ack_open` writes
the acks it can write as asked in the same probe, and leaves the rest to that lookup."""

from __future__ import annotations

from typing import Any

import pytest
from numbind.registry.domain.types import AckOutcome, OrderState
from numbind.registry.storage import feed, order_acks
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import OrderRow
from sqlalchemy import event, select

from tests.storage.test_feed_store import _with_orders

SIZE = 40


def _lookups(db: Database) -> tuple[list[str], dict[str, bytes]]:
    plat, _, _ = _with_orders(db, SIZE)
    items = db.transact(lambda s: feed.read_feed(s, plat, 0, SIZE), write=False)
    assert len(items) == SIZE
    return [i.order_id for i in items], {i.order_id: i.token for i in items}


def test_hints_never_change_which_orders_an_ack_finds(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, tokens = _lookups(db)
    plain = db.transact(lambda s: order_acks.orders_by_id(s, ids), write=False)
    assert sorted(plain) == sorted(ids)
    half = dict(list(tokens.items())[: SIZE // 2])
    wrong = {i: b"\xff" * 32 if n % 2 else t for n, (i, t) in enumerate(tokens.items())}
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if "orders" in stmt:
            statements.append(stmt)

    event.listen(db.read_engine, "before_cursor_execute", seen)
    found = {}
    try:
        for name, hints in (("all", tokens), ("half", half), ("wrong", wrong), ("none", {})):
            statements.clear()
            found[name] = db.transact(
                lambda s, h=hints: order_acks.orders_by_id(s, ids, h),  # type: ignore[misc]
                write=False,
            )
            if db.write_engine.dialect.name == "postgresql":
                by_id_alone = [q for q in statements if "any(" in q.lower()]
                # Every hint right: one statement, by (id, token), none by id alone.
                assert (len(statements), len(by_id_alone)) == (
                    {"all": (1, 0), "half": (2, 1), "wrong": (2, 1), "none": (1, 1)}[name]
                ), (name, statements)
    finally:
        event.remove(db.read_engine, "before_cursor_execute", seen)
    for name, got in found.items():
        assert got == plain, name


def _written(db: Database, planned: list[order_acks.PlannedAck], plat: int, hints: Any) -> Any:
    return db.transact(lambda s: order_acks.ack_open(s, plat, planned, hints))


def _acked(db: Database) -> dict[str, tuple[int, int, str]]:
    rows = db.transact(
        lambda s: s.execute(
            select(OrderRow.id, OrderRow.state, OrderRow.outcome, OrderRow.reason).where(
                OrderRow.acked_us.is_not(None)
            )
        ).all(),
        write=False,
    )
    return {r[0]: (int(r[1]), int(r[2]), str(r[3])) for r in rows}


def test_ack_open_writes_only_what_it_can_write_as_asked(db: Database) -> None:
    """PostgreSQL: the platform's open orders, stored under their hint, with an outcome
    that fits their kind, are written and returned; nothing else is. Elsewhere it writes
    nothing and leaves every ack to the lookup."""
    ids, tokens = _lookups(db)
    plat = int(db.transact(lambda s: s.scalar(select(OrderRow.platform_pk).limit(1))) or 0)
    done, rejected = int(OrderState.DONE), int(OrderState.REJECTED)
    unbound, refused = int(AckOutcome.UNBOUND), int(AckOutcome.REJECTED)
    noted = int(AckOutcome.NOTED)
    planned = [order_acks.PlannedAck(ids[0], done, unbound, "")]
    planned += [order_acks.PlannedAck(ids[1], rejected, refused, "kept")]
    # A revocation order acked as a notice (NOTED): the wrong kind, not written.
    planned += [order_acks.PlannedAck(ids[2], done, noted, "")]
    # A wrong hint: not written here (the lookup by id finds it).
    planned += [order_acks.PlannedAck(ids[3], done, unbound, "")]
    # Without a hint.
    planned += [order_acks.PlannedAck(ids[4], done, unbound, "")]
    hints = {i: tokens[i] for i in ids[:3]} | {ids[3]: b"\xff" * 32}
    # Another platform's ack of these orders writes nothing anywhere.
    assert _written(db, planned, plat + 1000, hints) == {}
    assert _acked(db) == {}
    got = _written(db, planned, plat, hints)
    if db.write_engine.dialect.name != "postgresql":
        assert got == {} and _acked(db) == {}
        return
    assert sorted(got) == sorted(ids[:2])
    assert all(t.platform_pk == plat and t.token == tokens[t.id] for t in got.values())
    assert _acked(db) == {ids[0]: (done, unbound, ""), ids[1]: (rejected, refused, "kept")}
    # Acked already: not written again, whatever the outcome.
    again = [order_acks.PlannedAck(ids[0], rejected, refused, "late")]
    assert _written(db, again, plat, hints) == {}
    assert _acked(db)[ids[0]] == (done, unbound, "")
