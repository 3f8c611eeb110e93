"""Change signals between registry processes that share one PostgreSQL store.

A writer announces a change *inside* the transaction that makes it (`announce`, which is
`pg_notify` on PostgreSQL): PostgreSQL delivers the notification to every listening
connection when, and only if, that transaction commits, so no process hears of a change
it cannot yet read, and a rolled-back change is never heard of. Each process keeps one
`Listener` connection (psycopg 3, async, autocommit) that LISTENs and hands each payload on.

A notification is lost if the listening connection is down when it is sent, so the
listener reports every (re)connection and the caller then treats *everything* as changed;
and callers also poll (`feed_heads`) so that even a silently stuck listener bounds the
delay. On SQLite `announce` does nothing: SQLite is single-process (see `storage.lock`)
and the writer's own process is told after commit.

Payloads: ``feed:<pk>,<pk>,...`` (those platforms' feeds grew), ``principals:<pk>`` (that
principal's standing changed: suspended, resumed, re-credentialed; ``principals`` alone: one
was registered), ``keys`` (the key map's epoch moved: rotation, end of a re-key,
retirement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import psycopg
from numbind.registry.storage.models import PrincipalRow
from numbind.registry.storage.pg_session import SERVER_KEEPALIVES, pg_connect_args
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "numbind_changes"
FEED = "feed"
PRINCIPALS = "principals"
KEYS = "keys"
# The feed "platform" 0 is the lifecycle log that federation members follow
# (services.notifier.LOG_CHANNEL); platforms' feeds are their principal pks, from 1.
LOG_CHANNEL = 0
# PostgreSQL refuses payloads of 8000 bytes or more; platform pks are chunked below that.
_MAX_PAYLOAD = 7000


def payloads(kind: str, ids: Iterable[int] = ()) -> list[str]:
    """The payloads that announce `kind` for `ids` (one or more, covering every id)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for pk in sorted(set(ids)):
        item = str(pk)
        if size + len(item) + 1 > _MAX_PAYLOAD and chunk:
            out.append(f"{kind}:{','.join(chunk)}")
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        out.append(f"{kind}:{','.join(chunk)}")
    return out or [kind]


def parse(payload: str) -> tuple[str, list[int]]:
    """(kind, ids) from a payload."""
    kind, _, rest = payload.partition(":")
    return kind, [int(x) for x in rest.split(",") if x.isdigit()]


def announce(session: Session, kind: str, ids: Iterable[int] = ()) -> None:
    """Tell every process when this transaction commits (PostgreSQL; no-op on SQLite, and
    where the Database was opened with notify=False)."""
    if session.get_bind().dialect.name != "postgresql" or not session.info.get("notify", True):
        return
    for payload in payloads(kind, ids):
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


def feed_heads(session: Session, platform_pks: Iterable[int]) -> dict[int, int]:
    """Each platform's feed head now: the polling fallback compares it with what the
    streams waiting here have read."""
    pks = sorted(set(platform_pks))
    if not pks:
        return {}
    rows = session.execute(
        select(PrincipalRow.pk, PrincipalRow.feed_head).where(PrincipalRow.pk.in_(pks))
    )
    return {int(pk): int(head) for pk, head in rows}


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg's conninfo."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class Listener:
    """One LISTEN connection: `on_payload` for each notification, `on_connected` after each
    (re)connection (notifications sent while it was down are lost: assume anything changed).

    Set up as the pool's connections are (storage.pg_session: named `numbind[PID]`,
    keepalives both ways), and asked `SELECT 1` after every `probe_seconds` of listening:
    a session that does not answer within as long (its backend hung, the network cut
    without a reset) is dropped and made again. Without that, a listener whose session had
    silently gone kept `numbind_change_listener_up` at 1 while every change arrived only
    by the poll, for as long as the operating system took to notice (two hours).
    """

    def __init__(
        self,
        url: str,
        on_payload: Callable[[str], None],
        on_connected: Callable[[], None],
        *,
        retry_seconds: float = 1.0,
        probe_seconds: float = 5.0,
    ) -> None:
        self._conninfo = libpq_url(url)
        self._on_payload = on_payload
        self._on_connected = on_connected
        self._retry = retry_seconds
        self._probe = probe_seconds
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None  # its session's, in pg_stat_activity
        self.socket: int | None = None  # its connection's file descriptor, while connected

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after any failure."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarting, a network blip
                log.warning("change listener lost its connection (%s); reconnecting", exc)
            self.connected.clear()
            await asyncio.sleep(self._retry)

    async def _session(self) -> None:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **pg_connect_args()),
            self._probe * 2,
        )
        async with conn:
            for setting in SERVER_KEEPALIVES:
                with contextlib.suppress(psycopg.Error):  # an engine without them: libpq's
                    await conn.execute(setting)
            await conn.execute(f"LISTEN {CHANNEL}")
            self.backend_pid, self.socket = conn.info.backend_pid, conn.pgconn.socket
            self.connected.set()
            self._on_connected()
            while True:
                # Notifications that arrive during the probe wait for the next round.
                async for note in conn.notifies(timeout=self._probe):
                    self._on_payload(note.payload)
                try:
                    await asyncio.wait_for(conn.execute("SELECT 1"), self._probe)
                except TimeoutError:
                    raise TimeoutError(
                        f"its session did not answer within {self._probe:g} s"
                    ) from None
