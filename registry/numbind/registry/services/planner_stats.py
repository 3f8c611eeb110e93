"""Keeps PostgreSQL's planner statistics in step with tables that change faster than
autovacuum looks (storage.planner_stats says why and when a table is stale). No grpc here.

Each second one registry process (an advisory lock picks it) lists the stale tables and
ANALYZEs them, on a thread of its own so that no request queues behind it. SQLite has no
such planner statistics: the keeper is not started there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from numbind.registry.storage import planner_stats as store
from numbind.registry.storage.db import Database, Session

log = logging.getLogger(__name__)

# How often the stale tables are looked for (a reissue's first minute is the case).
INTERVAL_SECONDS = 1.0
# Changes a table takes before this keeper analyzes it, however small it was.
FLOOR_ROWS = 1000


class StatisticsKeeper:
    def __init__(
        self,
        db: Database,
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        floor_rows: int = FLOOR_ROWS,
    ) -> None:
        self._db = db
        self._interval = interval_seconds
        self._floor = floor_rows
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numbind-analyze")

    def refresh(self) -> list[str]:
        """One round, blocking: the tables this process analyzed (none when another
        process's round holds the lock)."""
        return self._db.transact(self._round)

    def _round(self, session: Session) -> list[str]:
        if not store.claim(session):
            return []
        tables = store.stale(session, self._floor)
        store.analyze(session, tables)
        return tables

    async def run(self, stopping: asyncio.Event) -> None:
        """A round every interval until `stopping`. A failure (the database away, a role
        without the right to ANALYZE) is logged and the next round tries again; the
        registry works on without fresh statistics, only slower."""
        loop = asyncio.get_running_loop()
        failing = False
        while not stopping.is_set():
            try:
                tables = await loop.run_in_executor(self._executor, self.refresh)
                failing = False
                if tables:
                    log.debug("planner statistics refreshed: %s", ", ".join(tables))
            except Exception as exc:  # any failure waits for the next round
                if not failing:
                    log.warning("planner statistics not refreshed: %s", str(exc).splitlines()[0])
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._interval)
        self._executor.shutdown(wait=False)
