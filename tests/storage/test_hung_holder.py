"""A registry process that hangs inside a transaction (stopped, swapping, its host cut off)
does not stop the others for longer than the idle-in-transaction limit.

Some rows are locked by every process in turn: the local applier's cursor, the lifecycle
log's head, the log head. A reviewer stopped (SIGSTOP) a process in the middle of applying
a report; it held the applier's cursor row, and a report sent to another process waited for
as long as the pause lasted, without limit. Now PostgreSQL ends a session idle in a
transaction after `idle_timeout_seconds` (storage.IDLE_TIMEOUT_SECONDS), which releases
its locks; the hung process's next statement fails and its work is retried. PostgreSQL
only: on SQLite there is one process."""

from __future__ import annotations

import os
import threading

import pytest
from numbind.registry.storage import local_apply
from numbind.registry.storage.db import Database
from numbind.registry.storage.pg_session import pg_session_settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tests.storage._locks import until_one_waits_on_a_lock


def test_a_process_hung_holding_the_applier_cursor_is_cut_off(pg_db: Database) -> None:
    pg_db.transact(lambda s: local_apply.start(s, 0))
    hung = Database(pg_db.url, idle_timeout_seconds=1.0)
    conn = hung.write_engine.connect()
    try:
        session = Session(bind=conn)
        assert local_apply.cursor(session, lock=True) == 0  # and then nothing more
        got: list[int | None] = []
        waiter = threading.Thread(
            target=lambda: got.append(pg_db.transact(lambda s: local_apply.cursor(s, lock=True)))
        )
        waiter.start()
        # Without the limit the waiter stays blocked for as long as the holder hangs.
        waiter.join(30)
        assert not waiter.is_alive(), "still waiting for the hung process's lock"
        assert got == [0]
        # The hung process, resumed, finds its session gone rather than acting on it.
        with pytest.raises(DBAPIError):
            session.execute(text("SELECT 1"))
    finally:
        conn.invalidate()
        conn.close()
        hung.close()


def test_a_lock_wait_on_a_live_holder_is_not_cut(pg_db: Database) -> None:
    # The limit is on idling, not on holding: a transaction that keeps working (here: a
    # statement that waits on a lock, which is not idle) outlives it.
    pg_db.transact(lambda s: local_apply.start(s, 0))
    busy = Database(pg_db.url, idle_timeout_seconds=1.0)
    try:
        holder = pg_db.write_engine.connect()
        session = Session(bind=holder)
        local_apply.cursor(session, lock=True)
        got: list[int | None] = []
        waiter = threading.Thread(
            target=lambda: got.append(busy.transact(lambda s: local_apply.cursor(s, lock=True)))
        )
        waiter.start()
        assert until_one_waits_on_a_lock(pg_db, 10)
        waiter.join(2.5)  # more than the limit, spent waiting
        assert waiter.is_alive()
        session.commit()
        holder.close()
        waiter.join(10)
        assert got == [0]
    finally:
        busy.close()


def test_each_connection_names_its_process_and_carries_the_limits(pg_db: Database) -> None:
    limited = Database(pg_db.url, idle_timeout_seconds=2.5)
    try:
        with limited.write_engine.connect() as conn:
            name = conn.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).scalar_one()
            idle = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()
            keepalive = conn.execute(text("SHOW tcp_keepalives_idle")).scalar_one()
            client = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert name == f"numbind[{os.getpid()}]"
        assert idle == "2500ms"
        assert keepalive == "10"  # 0 (the operating system's) on a local socket
        assert client["keepalives"] == "1" and client["keepalives_idle"] == "10"
    finally:
        limited.close()


def test_a_limit_under_a_millisecond_is_one_not_off() -> None:
    # PostgreSQL counts the limit in milliseconds and 0 turns it off: 0.0004 s was sent as 0.
    assert "idle_in_transaction_session_timeout = 1" in pg_session_settings(0.0004)[0]
    assert pg_session_settings(0)[0].endswith("= 0")
    assert pg_session_settings(60)[0].endswith("= 60000")
