"""Reads never wait for a thread behind writers that queue for SQLite's one write
connection: a holder query's checks, a member's answer to its hub."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from numbind.registry.storage.db import Database
from sqlalchemy import text


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
