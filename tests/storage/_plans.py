"""PostgreSQL plans as the tests read them: every node of EXPLAIN (FORMAT JSON), flattened."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection


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
