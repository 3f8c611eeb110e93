"""The carrier app's SQLite plumbing, shared by the subscriber store and the session store:
one connection per call, WAL, foreign keys on, and writes in one ``BEGIN IMMEDIATE``
transaction, so any thread may call."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["connect", "reading", "transaction"]


def connect(path: Path) -> sqlite3.Connection:
    # Created 0600 before SQLite opens it (which gives its -wal and -shm files the same
    # mode), whatever the umask: sessions and subscribers' keyed ID hashes are no one
    # else's to read.
    if str(path) != ":memory:":
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(path)
    try:
        yield db
    finally:
        db.close()
