"""Migration 0016_orders_unchecked_refs: an order's revocation and platform are plain
columns, no foreign keys (an integrity trigger per inserted order); the downgrade brings
both keys back. On SQLite both ways rebuild the table: its rows, indexes (the partial one's
predicate included) and unique keys come through."""

from __future__ import annotations

from typing import Any

from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database
from sqlalchemy import Engine, inspect, text

from tests.storage.test_feed_migration import _fill

BEFORE = "0015_feed_in_orders"
KEYS = {(("revocation_id",), "revocations", ("id",)), (("platform_pk",), "principals", ("pk",))}


def _keys(engine: Engine) -> set[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    return {
        (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
        for fk in inspect(engine).get_foreign_keys("orders")
    }


def _indexes(engine: Engine) -> set[tuple[Any, ...]]:
    insp = inspect(engine)
    found: set[tuple[Any, ...]] = {
        (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes("orders")
    }
    found |= {
        (u["name"], tuple(u["column_names"]), True) for u in insp.get_unique_constraints("orders")
    }
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            found |= {
                ("sql", str(r[0]))
                for r in conn.execute(
                    text(
                        "SELECT sql FROM sqlite_master WHERE type = 'index'"
                        " AND tbl_name = 'orders' AND sql IS NOT NULL"
                    )
                )
            }
    return found


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM orders ORDER BY pk"))]


def test_orders_reference_nothing_and_the_downgrade_restores_both_keys(db: Database) -> None:
    _fill(db)
    engine = db.write_engine
    assert _keys(engine) == set()
    rows, indexes = _rows(engine), _indexes(engine)
    assert len(rows) == 18
    assert (
        any("WHERE acked_us IS NULL" in str(i) for i in indexes) or engine.dialect.name != "sqlite"
    )

    migrate.downgrade(engine, BEFORE)
    assert _keys(engine) == KEYS
    assert (_rows(engine), _indexes(engine)) == (rows, indexes)

    migrate.upgrade(engine)
    assert _keys(engine) == set()
    assert (_rows(engine), _indexes(engine)) == (rows, indexes)


def test_an_order_of_an_unknown_revocation_is_now_the_storage_layers_to_refuse(
    db: Database,
) -> None:
    """Nothing in the database refuses it any more; what writes orders names a revocation
    it wrote (storage.orders.append after new_revocation)."""
    _fill(db)
    with db.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (pk, id, revocation_id, platform_pk, binding_pk, token,"
                " kind, cause, state, outcome, reason, created_us, deadline_us, feed_seq)"
                " SELECT pk + 1000, 'unchecked', 'no-such-revocation', 99999, binding_pk,"
                " token, kind, cause, state, outcome, reason, created_us, deadline_us,"
                " feed_seq + 1000 FROM orders ORDER BY pk LIMIT 1"
            )
        )
        assert (
            conn.execute(text("SELECT count(*) FROM orders WHERE id = 'unchecked'")).scalar_one()
            == 1
        )
        conn.rollback()
