"""PostgreSQL (storage.pool_checks): a pooled connection is pinged at checkout only after
sitting idle; a dead one found that way is replaced without the caller seeing it; one that
died while in use again too soon fails that transaction as UNAVAILABLE, and the pool is
recycled so the next one succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from numbind.registry.errors import Unavailable
from numbind.registry.storage.db import Database
from numbind.registry.storage.pool_checks import ping_when_idle
from sqlalchemy import Engine, create_engine, text

from tests.conftest import require_postgres

IDLE = 0.3


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine(require_postgres(), pool_size=1, max_overflow=0)
    ping_when_idle(engine, IDLE)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pings `engine`'s checks send (through its dialect's `do_ping`) from here on."""
    sent: list[str] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        sent.append("SELECT 1")
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    with psycopg.connect(require_postgres().replace("+psycopg", "")) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # the backend gone before the next use


def test_a_connection_used_again_at_once_is_not_pinged(engine: Engine, pings: list[str]) -> None:
    first = _pid(engine)
    for _ in range(5):
        assert _pid(engine) == first
    assert pings == []
    time.sleep(IDLE * 1.5)
    assert _pid(engine) == first
    assert pings == ["SELECT 1"]


def test_a_dead_idle_connection_is_replaced_unseen(engine: Engine, pings: list[str]) -> None:
    dead = _pid(engine)
    _terminate(dead)
    time.sleep(IDLE * 1.5)
    fresh = _pid(engine)  # no error reaches the caller
    assert fresh != dead and pings == ["SELECT 1"]


def test_a_connection_that_died_just_now_fails_once_as_unavailable() -> None:
    db = Database(require_postgres())
    try:
        pids = {db.transact(lambda s: int(s.execute(text("SELECT pg_backend_pid()")).scalar_one()))}
        for pid in pids:
            _terminate(pid)
        with pytest.raises(Unavailable):
            db.transact(lambda s: s.execute(text("SELECT 1")).scalar_one())
        # The pool was recycled: the next transaction connects afresh.
        assert db.transact(lambda s: s.execute(text("SELECT 2")).scalar_one()) == 2
    finally:
        db.close()
