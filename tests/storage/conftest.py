"""The storage tests' store: a fresh database (tests/conftest.py's `database_url`, SQLite
and, when configured, PostgreSQL) migrated to the head."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database

from tests.conftest import require_postgres


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.write_engine)
    yield database
    database.close()


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """The same on PostgreSQL alone, for what only PostgreSQL has (partitions, a planner
    with statistics): a skip without it, a failure under CI=true, never a pass on SQLite."""
    database = Database(require_postgres())
    migrate.upgrade(database.write_engine)
    yield database
    database.close()
