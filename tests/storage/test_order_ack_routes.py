"""An ack's order lookup with routing hints (storage.order_acks.orders_by_id): on PostgreSQL
an order id with its token probes one partition, and a hint never changes the answer — a
missing or wrong one falls back to the lookup by id alone."""

from __future__ import annotations

from typing import Any

import pytest
from numbind.registry.storage import feed, order_acks
from numbind.registry.storage.db import Database
from sqlalchemy import event

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
