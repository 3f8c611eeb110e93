"""SQLite is the single-process embedded store: a second registry serving the same SQLite
file is refused, and says what to do instead; PostgreSQL takes no such lock."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage.lock import StoreLock
from numbind.registry.testing import running_registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_second_server_on_the_same_sqlite_store_is_refused(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data") as reg:
        lock = StoreLock.for_url(reg.registry.db.url)
        assert lock is not None
        with pytest.raises(FailedPrecondition, match=rf"pid {os.getpid()}.*PostgreSQL"):
            lock.acquire()
    # Released when the first stops: the store can be served again.
    lock.acquire()
    lock.release()


def test_numbind_serve_refuses_a_store_already_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lock = StoreLock.for_url(f"sqlite:///{(data / 'registry.db').resolve()}")
    assert lock is not None
    data.mkdir(mode=0o700)
    lock.acquire()  # stands in for a registry already serving this data dir
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "numbind.cli",
                "serve",
                "--data-dir",
                str(data),
                "--init",
                "--listen",
                f"127.0.0.1:{_free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        lock.release()
    assert out.returncode != 0
    assert "SQLite is single-process" in out.stderr
    assert "Traceback" not in out.stderr


def test_no_lock_for_postgresql_or_memory() -> None:
    assert StoreLock.for_url("postgresql+psycopg://u@h/db") is None
    assert StoreLock.for_url("sqlite:///:memory:") is None


def test_a_second_serve_changes_nothing_in_a_store_being_served(tmp_path: Path) -> None:
    """It used to migrate the schema first and only then meet the lock: a newer release
    started beside a running older one upgraded the store under it."""
    data = tmp_path / "data"
    cli = [sys.executable, "-m", "numbind.cli"]
    subprocess.run([*cli, "admin", "init", "--data-dir", str(data)], check=True, timeout=120)
    store = data / "registry.db"
    with sqlite3.connect(store) as db:  # as if the running registry were one release older
        db.execute("UPDATE alembic_version SET version_num = '0015_feed_in_orders'")
    lock = StoreLock.for_url(f"sqlite:///{store.resolve()}")
    assert lock is not None
    lock.acquire()  # stands in for that registry, serving
    try:
        out = subprocess.run(
            [*cli, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{_free_port()}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        lock.release()
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()  # the refusal alone: no migration ran first
    assert "SQLite is single-process" in line
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0015_feed_in_orders",)
        ]
