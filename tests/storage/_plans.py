"""What the storage tests read of the statements the store runs: the ones an engine
executes while a block runs (`captured`), and a statement's PostgreSQL plan, every node of
EXPLAIN (FORMAT JSON) flattened (`plan_nodes`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event


@contextmanager
def captured(engine: Engine, match: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """(SQL, parameters) of each statement `engine` executes inside the block whose SQL
    `match` accepts, in order."""
    seen: list[tuple[str, Any]] = []

    def on(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        if match(stmt):
            seen.append((stmt, params))

    event.listen(engine, "before_cursor_execute", on)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on)


def plan_nodes(conn: Connection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """The nodes of `sql`'s plan (driver SQL, with `params`), parents before children."""
    row = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar()
    doc = row if isinstance(row, list) else json.loads(str(row))
    found: list[dict[str, Any]] = []
    pending = [doc[0]["Plan"]]
    while pending:
        node = pending.pop()
        found.append(node)
        pending.extend(reversed(node.get("Plans", [])))
    return found
