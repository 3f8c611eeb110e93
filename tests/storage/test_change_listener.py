"""The LISTEN connection is set up as the pool's are, and one whose session stops answering
is made again (PostgreSQL only: SQLite has no other process to hear from).

It used to connect bare: no `numbind[PID]` name in pg_stat_activity (an operator looking
for a process's sessions missed it) and the operating system's keepalives (a peer that
vanished noticed after two hours); and a session that hung kept the listener "up" while
every change arrived only by the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
from numbind.registry.storage.signals import Listener, libpq_url

from tests.conftest import require_postgres


@pytest.fixture
async def listening() -> AsyncIterator[tuple[Listener, str]]:
    url = require_postgres()
    listener = Listener(url, lambda _: None, lambda: None, retry_seconds=0.1, probe_seconds=0.5)
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.connected.wait(), 10)
    yield listener, libpq_url(url)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _session(conninfo: str, pid: int) -> tuple[str, str] | None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT application_name, query FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        row = await cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]))


async def test_the_listener_is_named_and_keeps_its_connection_alive(
    listening: tuple[Listener, str],
) -> None:
    listener, conninfo = listening
    assert listener.backend_pid is not None and listener.socket is not None
    seen = await _session(conninfo, listener.backend_pid)
    assert seen is not None and seen[0] == f"numbind[{os.getpid()}]", seen
    with socket.socket(fileno=os.dup(listener.socket)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10


async def test_a_listener_whose_session_hangs_connects_again(
    listening: tuple[Listener, str],
) -> None:
    listener, conninfo = listening
    hung = listener.backend_pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # the backend stops answering; its socket stays open
    try:
        async with asyncio.timeout(15):
            while True:
                if listener.backend_pid != hung and listener.connected.is_set():
                    break
                await asyncio.sleep(0.05)
        assert listener.backend_pid is not None
        seen = await _session(conninfo, listener.backend_pid)
        assert seen is not None and seen[1].startswith("LISTEN"), seen
    finally:
        os.kill(hung, signal.SIGCONT)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (hung,))
