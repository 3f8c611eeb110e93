"""PostgreSQL: a pooled connection is checked with a round trip only when it has sat idle in
the pool, not at every checkout.

SQLAlchemy's `pool_pre_ping` sends a ping at every checkout. Every transaction of the
registry checks a connection out, so during a reissue each of ~1,000 transactions a few
seconds apart paid a round trip first: py-spy of the registry in the full bench put 2.4 s
of its threads' time in the ping. A connection checked back in milliseconds ago is as alive
as it was then. One that sat idle for IDLE_SECONDS or more is pinged, and if the ping
fails, the pool is told to drop it and connect afresh (SQLAlchemy's documented pessimistic
disconnect handling, a `checkout` handler raising DisconnectionError).

What a ping no longer covers: a server restarted within IDLE_SECONDS of a connection's last
use. Its next statement then fails as a lost connection: storage.db reports it as
UNAVAILABLE (the client retries under the same request id), and SQLAlchemy, seeing the
disconnect, recycles every connection of the pool checked out before it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

IDLE_SECONDS = 1.0
_CHECKED_IN = "numbind_checked_in"


def ping_when_idle(engine: Engine, idle_seconds: float | None = None) -> None:
    """Install the check on `engine`'s pool (instead of `pool_pre_ping`): a connection
    idle `idle_seconds` (default IDLE_SECONDS) or more is pinged at checkout."""
    limit = IDLE_SECONDS if idle_seconds is None else idle_seconds

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < limit:
            return  # new, or back in the pool only just now
        try:
            # The dialect's own ping, the one pool_pre_ping sends.
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: this connection is not to be used
            raise DisconnectionError(f"pooled connection failed its check: {exc}") from exc
        if not alive:
            raise DisconnectionError("pooled connection failed its check")
