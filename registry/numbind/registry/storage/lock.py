"""The embedded SQLite store serves one registry process at a time.

SQLite would let a second `numbind serve` open the same file, but the two would not behave
as one registry: feed wake-ups and caches are per process, and only PostgreSQL carries them
across (storage.signals). So a serving process holds an exclusive lock on a file beside
the database for as long as it serves, and a second one is refused with what to do instead.
Short-lived operator commands (`numbind admin ...`) do not take it: SQLite's own locking
keeps their single writes safe, and the server sees them through its caches' expiry.
The lock is flock(2): the kernel drops it when the process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage.db import sqlite_file


class StoreLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> StoreLock | None:
        """The lock for an SQLite file URL; None for other stores (and in-memory SQLite)."""
        db = sqlite_file(url)
        return None if db is None else cls(db.with_name(db.name + ".serving.lock"))

    def acquire(self) -> None:
        """Hold the lock, or raise FailedPrecondition naming the process that holds it.
        Holding it already is fine: `serve` takes it before migrating, the server again."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FailedPrecondition(
                f"store: the SQLite store {self.path.with_suffix('').with_suffix('')} is "
                f"already served by pid {holder}; SQLite is single-process. Run one "
                "registry per SQLite store, or run several on one PostgreSQL "
                "(--database-url postgresql+psycopg://...)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
