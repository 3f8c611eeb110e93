"""Waiting, in a test, until another transaction is blocked on a row lock (PostgreSQL)."""

from __future__ import annotations

import time

from numbind.registry.storage.db import Database
from sqlalchemy import text


def until_one_waits_on_a_lock(db: Database, seconds: float) -> bool:
    """True once a backend of this database waits on a lock (a row another transaction
    holds); False after `seconds` without one. Replaces a fixed sleep before releasing
    the holder: on a slow machine the other thread may not have got that far yet."""
    deadline = time.monotonic() + seconds
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        if db.transact(lambda s: s.execute(query).scalar_one(), write=False):
            return True
        time.sleep(0.02)
    return False
