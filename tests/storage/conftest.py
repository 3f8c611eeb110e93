"""The storage tests' store: a fresh database (tests/conftest.py's `database_url`, SQLite
and, when configured, PostgreSQL) migrated to the head."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database.write_engine)
    yield database
    database.close()
