"""A database that cannot be reached is UNAVAILABLE (retry later), never INTERNAL.

Found by the fault suite (tests/faults/test_postgres_restart.py): while PostgreSQL
restarted, every call failed with INTERNAL, so the SDK did not retry.
"""

from __future__ import annotations

import logging
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


@pytest.mark.parametrize(
    "sqlstate",
    [
        "53200",  # out of memory: "out of shared memory" when the lock table is full
        "53300",  # too many connections
        "25P03",  # this session ended for idling in a transaction (storage.pg_session)
    ],
)
def test_a_server_short_of_resources_is_unavailable(pg_db: Database, sqlstate: str) -> None:
    # A reviewer's stream ended INTERNAL, unretried, when another database on the same
    # server filled the lock table mid-restart: the server could not serve then, and a
    # retry might.
    raise_it = text(
        f"DO $$ BEGIN RAISE EXCEPTION 'short of resources' USING ERRCODE = '{sqlstate}'; END $$"
    )
    for write in (True, False):
        with pytest.raises(Unavailable, match="database is unavailable"):
            pg_db.transact(lambda s: s.execute(raise_it), write=write)


def test_an_error_of_the_request_itself_stays_what_it_is(pg_db: Database) -> None:
    with pytest.raises(Exception) as caught:
        pg_db.transact(lambda s: s.execute(text("SELECT 1 / 0")).scalar())
    assert not isinstance(caught.value, Unavailable)


def test_a_retried_transaction_is_logged_with_its_sqlstate(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # "retrying transaction after OperationalError" did not say which contention it was:
    # a deadlock, a serialization failure, a key another writer took.
    pg_db.transact(lambda s: s.execute(text("CREATE TABLE once (k int PRIMARY KEY)")))
    pg_db.transact(lambda s: s.execute(text("INSERT INTO once VALUES (1)")))
    with (
        caplog.at_level(logging.INFO, logger="numbind.registry.storage.db"),
        pytest.raises(Unavailable, match="contention"),
    ):
        pg_db.transact(lambda s: s.execute(text("INSERT INTO once VALUES (1)")))
    retries = [r.getMessage() for r in caplog.records if "retrying transaction" in r.getMessage()]
    assert retries and all("IntegrityError 23505" in m for m in retries), retries
