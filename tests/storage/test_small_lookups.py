"""PostgreSQL: a lookup of a few tokens (a holder query's one number and its live bindings)
reads only those tokens' partitions (storage.pgsets.FEW). Behind an array the planner could
not prune, and on a small table's statistics it hashed a sequential scan of every partition
for one row. A batch (a report's 10,000 numbers) keeps one statement over the tokens'
array. Both give the same rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import NumberState
from numbind.registry.storage import numbers, pgsets, principals
from numbind.registry.storage.bindings import live_for_tokens
from numbind.registry.storage.db import Database
from sqlalchemy.orm import Session

from tests.storage._plans import captured, plan_nodes
from tests.storage.test_feed_store import T0, _binding

COUNT = 40


def _stored(db: Database) -> list[bytes]:
    """COUNT numbers, each with a binding, and statistics that know them."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "c-few").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "p-few").pk)
    made = db.transact(lambda s: [_binding(s, plat, i) for i in range(COUNT)])
    tokens = [b.binding.token.value for b in made]
    record = NumberRecord(carrier, NumberState.ACTIVE, T0, None, T0, T0)
    db.transact(lambda s: numbers.save(s, dict.fromkeys(tokens, record), {}, "k1"))
    db.transact(lambda s: s.connection().exec_driver_sql("ANALYZE numbers, bindings"))
    return tokens


def _partitions(db: Database, parent: str, call: Callable[[Session], Any]) -> tuple[Any, set[str]]:
    """What `call` returns, and the partitions of `parent` its statement's plan reads."""
    with captured(db.write_engine, lambda sql: f" {parent} " in sql) as seen:
        result = db.transact(call)
    assert len(seen) == 1, seen
    stmt, params = seen[0]

    def explain(s: Session) -> set[str]:
        return {
            str(node["Relation Name"])
            for node in plan_nodes(s.connection(), stmt, params)
            if str(node.get("Relation Name", "")).startswith(f"{parent}_p")
        }

    return result, db.transact(explain)


def test_one_number_is_read_from_its_partition_alone(pg_db: Database) -> None:
    tokens = _stored(pg_db)

    def numbers_of(wanted: list[bytes], lock: bool) -> Callable[[Session], list[Any]]:
        return lambda s: pgsets.numbers_of(s.connection(), wanted, lock=lock)

    for lock in (False, True):
        rows, read = _partitions(pg_db, "numbers", numbers_of(tokens[:1], lock))
        assert [bytes(r[0]) for r in rows] == tokens[:1]
        assert len(read) == 1, read
    few = tokens[: pgsets.FEW]
    rows, read = _partitions(pg_db, "numbers", numbers_of(few, False))
    assert sorted(bytes(r[0]) for r in rows) == sorted(few)
    # A batch past FEW (and several numbers locked) keep the array, and find the same rows.
    for wanted, lock in ((tokens, False), (tokens[:3], True)):
        got = pg_db.transact(numbers_of(wanted, lock))
        assert sorted(bytes(r[0]) for r in got) == sorted(wanted)


def test_one_numbers_live_bindings_are_read_from_its_partition_alone(pg_db: Database) -> None:
    tokens = _stored(pg_db)
    live, read = _partitions(pg_db, "bindings", lambda s: live_for_tokens(s, tokens[:1]))
    assert list(live) == tokens[:1] and len(live[tokens[0]]) == 1
    assert len(read) == 1, read
    every = pg_db.transact(lambda s: live_for_tokens(s, tokens))
    assert sorted(every) == sorted(tokens)
