"""Reads never wait for a thread behind writers that queue for SQLite's one write
connection: a holder query's checks, a member's answer to its hub."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from numbind.registry.app import open_database
from numbind.registry.config import load_settings
from numbind.registry.storage.db import Database, Session
from sqlalchemy import text

from tests.conftest import require_postgres


async def test_a_read_is_served_while_writers_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(f"sqlite:///{path}")
    db.transact(lambda s: s.execute(text("CREATE TABLE t (x INTEGER)")))
    db.transact(lambda s: s.execute(text("INSERT INTO t VALUES (1)")))
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        # More writers than the store has threads, all waiting for the write lock.
        writers = [
            asyncio.ensure_future(db.run(lambda s: s.execute(text("INSERT INTO t VALUES (2)"))))
            for _ in range(12)
        ]
        await asyncio.sleep(0.2)
        read = db.run(lambda s: s.execute(text("SELECT count(*) FROM t")).scalar_one(), write=False)
        assert await asyncio.wait_for(read, 5.0) == 1
        assert not any(w.done() for w in writers)
    finally:
        lock.execute("COMMIT")
        lock.close()
    await asyncio.gather(*writers)
    assert db.transact(lambda s: s.execute(text("SELECT count(*) FROM t")).scalar_one()) == 13
    db.close()


async def test_no_more_write_transactions_run_at_once_than_the_setting_allows(
    tmp_path: Path,
) -> None:
    # NUMBIND_DB_WRITE_THREADS bounds the writes in flight (storage.db.WRITE_THREADS says
    # why); reads have threads of their own and are not counted against it.
    settings = load_settings(
        environ={
            "NUMBIND_DATA_DIR": str(tmp_path),
            "NUMBIND_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "NUMBIND_DB_WRITE_THREADS": "3",
        }
    )
    db = open_database(settings)
    guard = threading.Lock()
    running = [0]
    most = [0]

    def write(_s: Session) -> None:
        # Counted before the write lock: a transaction holds its thread while it waits.
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with guard:
            running[0] -= 1

    try:
        await asyncio.gather(*(db.run(write) for _ in range(12)))
        assert most[0] == 3
        read = db.run(lambda s: s.execute(text("SELECT 1")).scalar_one(), write=False)
        assert await asyncio.wait_for(read, 5.0) == 1
    finally:
        db.close()


def test_postgresql_connections_compile_nothing_just_in_time() -> None:
    # storage.pg_session.on_pg_connect: a plan costed on stale statistics must not spend
    # seconds in JIT.
    db = Database(require_postgres())
    try:
        for write in (True, False):
            shown = db.transact(lambda s: s.execute(text("SHOW jit")).scalar_one(), write=write)
            assert shown == "off"
    finally:
        db.close()


def test_sqlite_checkpoints_its_wal_every_10000_pages(tmp_path: Path) -> None:
    # storage.db.WAL_AUTOCHECKPOINT_PAGES: at SQLite's default 1,000 a reissue's commits paid
    # a checkpoint every ~4 MB, holding the write lock.
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        for write in (True, False):
            pages = db.transact(
                lambda s: s.execute(text("PRAGMA wal_autocheckpoint")).scalar_one(), write=write
            )
            assert pages == 10_000
    finally:
        db.close()
