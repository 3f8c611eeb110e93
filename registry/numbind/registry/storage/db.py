"""Engines, units of work and retries: the only place that knows which database is behind.

SQLite (embedded default): WAL, one write connection (so writers queue in-process instead of
failing with "database is locked"), `BEGIN IMMEDIATE` for writes, any number of readers.
PostgreSQL (production): one pool; transactions that fail with a serialization failure or a
deadlock are retried, which also keeps us honest for distributed SQL engines. Writes run at
READ COMMITTED; read-only units of work at REPEATABLE READ, so a read of several statements
sees one snapshot (on SQLite a read transaction already does): a read that checks the
token key map and then looks rows up cannot see the map before a rotation and rows after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from numbind.registry.errors import Unavailable
from numbind.registry.storage import IDLE_TIMEOUT_SECONDS, MAX_WRITE_THREADS, WRITE_THREADS
from numbind.registry.storage.pg_session import on_pg_connect, pg_connect_args, pg_session_settings
from numbind.registry.storage.pool_checks import ping_when_idle
from sqlalchemy import Connection, Engine, create_engine, event, make_url, orm
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

# One unit of work (one transaction). Services receive it from `Database.run` and hand it
# to storage functions; they never query it themselves, so they need this name and not
# SQLAlchemy (an import-linter contract keeps sqlalchemy out of services).
Session: TypeAlias = orm.Session

# SQLite durability. FULL (the default): in WAL mode every commit is fsynced before it is
# acknowledged, so a power loss cannot drop a commit a carrier or platform was already told
# succeeded. NORMAL syncs only at checkpoints: faster, but the last commits can be lost on
# power failure (not on a crash of the process). bench/publish.py and bench/reissue.py
# measure both.
SYNCHRONOUS = ("FULL", "NORMAL")

# SQLite checkpoints the WAL into the database file when a commit finds it past this many
# pages, in that commit, holding the one write lock. At SQLite's default (1,000 pages,
# ~4 MB) every ~4 MB of a reissue's commits paid one, each copying pages that later commits
# rewrote anyway. At 10,000 (~40 MB of WAL) the federation bench's last ack
# was 14.5, 14.6, 11.7 and 9.8 s against 16.5, 18.9, 12.0 and 18.3 s, alternated on a noisy
# 2-core machine (members' CPU 7.9-11.6 s against 9.3-14.0 s).
WAL_AUTOCHECKPOINT_PAGES = 10_000

# SQLSTATEs worth retrying: serialization_failure, deadlock_detected.
_RETRY_SQLSTATES = {"40001", "40P01"}
MAX_ATTEMPTS = 6
_AWAY_SQLSTATES = {"57P01", "57P02", "57P03", "25P03", "57P05"}


class StaleRead(Exception):
    """A row changed between this transaction's read of it and its write (a compare-and-set
    missed): another transaction won a race. Raised by storage inside `transact`, which
    runs the whole transaction again so that the caller decides on what the winner wrote;
    never reaches a caller (after MAX_ATTEMPTS it is Unavailable)."""


def _retryable(exc: BaseException) -> bool:
    """Contention, not a fault: another transaction won a race and a fresh attempt will see
    its result. That includes unique-key collisions (two writers inserting the same new
    binding, number or idempotency record at once on PostgreSQL); every write path is
    idempotent, so the retry answers from what the winner wrote. A unique violation that
    persists is reported as Unavailable after MAX_ATTEMPTS, never as INTERNAL."""
    if isinstance(exc, IntegrityError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if _sqlstate(exc) in _RETRY_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def database_away(exc: DBAPIError) -> bool:
    """The database cannot be reached right now (restarting, shutting down, refusing
    connections, a connection cut mid-transaction), as opposed to the request failing in
    it. The caller is told UNAVAILABLE and retries under the same request id; a write
    whose commit was cut off is then answered from what it stored, or done once."""
    if exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    if code is not None:
        # Class 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot
        # connect now; 25P03, 57P05: this session ended for idling (storage.pg_session).
        # Class 53, insufficient resources: too many connections, out of memory or of
        # lock-table slots (a reviewer's stream got INTERNAL while another database on the
        # same server held the lock table), disk full: the server cannot serve this now,
        # and a retry may find it can.
        return code.startswith(("08", "53")) or code in _AWAY_SQLSTATES
    # psycopg reports a failed connection attempt (refused, "shutting down") without a
    # SQLSTATE; SQLite has no connections to lose.
    return isinstance(exc, OperationalError) and str(exc.orig).startswith("connection ")


def driver_sql(conn: Connection, text: str) -> str:
    """Driver SQL in the dialect's positional paramstyle (SQLite `?`, psycopg `%s`).

    Hot bulk paths use `exec_driver_sql` with executemany: SQLAlchemy's per-statement
    compilation and ORM bookkeeping cost more than the database work there.
    """
    return text if conn.dialect.paramstyle == "qmark" else text.replace("?", "%s")


def marks(n: int) -> str:
    """`?, ?, ?`: `n` parameters for an IN list in driver SQL (`driver_sql` turns them into
    the dialect's)."""
    return ", ".join("?" * n)


class Database:
    """Owns the engines; hands out sessions for one unit of work at a time."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        synchronous: str = "FULL",
        notify: bool = True,
        write_threads: int = WRITE_THREADS,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        """`synchronous`: SQLite's PRAGMA synchronous (FULL or NORMAL; ignored elsewhere).
        `notify`: writers announce changes with pg_notify (storage.signals); False for an
        engine without it, where other processes learn of changes by polling alone.
        `write_threads`: write transactions this process runs at once (WRITE_THREADS).
        `idle_timeout_seconds`: PostgreSQL ends a session idle in a transaction this long
        (IDLE_TIMEOUT_SECONDS; 0: never)."""
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous: got {synchronous!r}, want FULL or NORMAL")
        if not 1 <= write_threads <= MAX_WRITE_THREADS:
            raise ValueError(f"write_threads: got {write_threads}, want 1..{MAX_WRITE_THREADS}")
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.notify = notify and not self.is_sqlite
        if self.is_sqlite:
            self._prepare_sqlite_dir(url)
            self.read_engine = self._sqlite_engine(url, write=False, echo=echo, sync=synchronous)
            self.write_engine = self._sqlite_engine(url, write=True, echo=echo, sync=synchronous)
        else:
            try:
                engine = create_engine(
                    url,
                    echo=echo,
                    pool_size=10,
                    max_overflow=10,
                    connect_args=pg_connect_args(),
                )
            except (ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
                raise ValueError(f"database URL {shown_url(url)!r}: {_why(exc)}") from None
            settings = pg_session_settings(idle_timeout_seconds)
            event.listen(engine, "connect", partial(on_pg_connect, session_settings=settings))
            ping_when_idle(engine)  # storage.pool_checks: not a round trip per checkout
            self.write_engine = engine
            # Same pool; the isolation level is set per checkout and reset on return.
            self.read_engine = engine.execution_options(isolation_level="REPEATABLE READ")
        # Sessions carry whether to announce; storage.signals reads it there.
        info = {"notify": self.notify}
        self._read = sessionmaker(self.read_engine, expire_on_commit=False, info=info)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False, info=info)
        # Storage calls block; they run here so the event loop never waits on a disk. Reads
        # and writes get threads of their own: on SQLite writers queue for the one write
        # connection, each holding a thread while it waits, and a read (a holder query, a
        # member's answer to its hub) must not wait for a thread behind them.
        self._pool = ThreadPoolExecutor(max_workers=write_threads, thread_name_prefix="numbind-db")
        self._read_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="numbind-db-r")

    @staticmethod
    def _prepare_sqlite_dir(url: str) -> None:
        """The store's directory (0700 when made here) and the file itself, created 0600
        before SQLite opens it: SQLite gives its -wal and -shm files the database file's
        own mode, so all three are private from the start whatever the umask."""
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))

    @staticmethod
    def _sqlite_engine(url: str, *, write: bool, echo: bool, sync: str) -> Engine:
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=1 if write else 8,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from pysqlite so BEGIN is ours to choose.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any exception."""
        factory = self._write if write else self._read
        with factory() as session, session.begin():
            yield session

    def transact(self, fn: Callable[[Session], T], *, write: bool = True) -> T:
        """Run fn in one transaction, retrying serialization failures with backoff."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.session(write=write) as session:
                    return fn(session)
            except StaleRead as exc:
                if attempt == MAX_ATTEMPTS:
                    raise Unavailable("storage: too much contention, retry later") from exc
                log.info("retrying transaction after a stale read (attempt %d)", attempt)
                continue
            except DBAPIError as exc:
                if database_away(exc):
                    log.warning("storage unavailable: %s", str(exc.orig).splitlines()[0])
                    raise Unavailable("storage: the database is unavailable, retry later") from exc
                if not write or not _retryable(exc):
                    raise
                if attempt == MAX_ATTEMPTS:
                    raise Unavailable("storage: too much contention, retry later") from exc
                delay = min(0.5, 0.01 * 2**attempt) * (0.5 + random.random())
                # With its SQLSTATE (40001 serialization, 40P01 deadlock, 23505 a unique
                # key another writer took): which contention it was is what an operator asks.
                log.info(
                    "retrying transaction after %s %s (attempt %d)",
                    type(exc).__name__,
                    _sqlstate(exc) or str(exc.orig).splitlines()[0][:80],
                    attempt,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    async def run(
        self,
        fn: Callable[[Session], T],
        *,
        write: bool = True,
        executor: ThreadPoolExecutor | None = None,
    ) -> T:
        """`transact` off the event loop: writes in the shared pool, reads in their own (a
        read never waits for a thread held by a writer queued for SQLite's one write
        connection), or either in `executor` (a background writer with a thread of its
        own, not queued behind requests)."""
        loop = asyncio.get_running_loop()
        pool = executor or (self._pool if write else self._read_pool)
        return await loop.run_in_executor(pool, lambda: self.transact(fn, write=write))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self.write_engine.dispose()
        if self.is_sqlite:
            self.read_engine.dispose()


def shown_url(url: str) -> str:
    """`url` fit for a message or a log: any password replaced by *** (a string that is no
    URL at all is shown as it is)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite store's URL; None for any other store, an in-memory database
    or a `file:` URI."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    return None if name.startswith("file:") else Path(name)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"its driver is not installed ({exc}); numbind ships SQLite and postgresql+psycopg"
    return str(exc).splitlines()[0]
