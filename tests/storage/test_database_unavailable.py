"""A database that cannot be reached is UNAVAILABLE (retry later), never INTERNAL.

Found by the fault suite (tests/faults/test_postgres_restart.py): while PostgreSQL
restarted, every call failed with INTERNAL, so the SDK did not retry.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from numbind.registry.errors import Unavailable
from numbind.registry.storage.db import Database
from sqlalchemy import text


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("write", [True, False])
def test_a_refused_connection_is_unavailable(write: bool) -> None:
    db = Database(f"postgresql+psycopg://postgres@127.0.0.1:{_dead_port()}/nothing")
    try:
        with pytest.raises(Unavailable, match="database is unavailable"):
            db.transact(lambda s: s.execute(text("SELECT 1")).scalar(), write=write)
    finally:
        db.close()


def test_a_failing_statement_is_not_mistaken_for_an_unreachable_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with pytest.raises(Exception) as caught:
            db.transact(lambda s: s.execute(text("SELECT * FROM no_such_table")).all())
        assert not isinstance(caught.value, Unavailable)
    finally:
        db.close()
