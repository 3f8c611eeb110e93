"""PostgreSQL's view of a table's heap for the HOT-update tests: its partitions' storage
options, and the updates a backend has counted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session


def partition_options(engine: Engine, parent: str) -> list[str]:
    """Each partition's storage options of table `parent`, comma-joined ('' for none)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT coalesce(array_to_string(c.reloptions, ','), '') FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
                " WHERE p.relname = :parent"
            ),
            {"parent": parent},
        )
        return [str(r[0]) for r in rows]


def updates(s: Session, parent: str) -> tuple[int, int]:
    """(rows updated, of them HOT) in the partitions of `parent`, as this backend counts
    them: this transaction's, and PostgreSQL 15 also holds the backend's counts of earlier
    transactions until it flushes them (at most once a second), so a caller that has run
    others on the connection takes a difference."""
    row: Any = s.execute(
        text(
            "SELECT COALESCE(SUM(n_tup_upd), 0), COALESCE(SUM(n_tup_hot_upd), 0)"
            " FROM pg_stat_xact_user_tables WHERE relname LIKE :pattern"
        ),
        {"pattern": parent + "\\_p%"},
    ).one()
    return int(row[0]), int(row[1])
