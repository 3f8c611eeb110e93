"""Group commit: concurrent small writes share one transaction, so one fsync.

On SQLite every write goes through the store's one write connection and, with
synchronous=FULL (kept: a commit a caller was told of survives a power loss), every commit
waits for an fsync of the WAL. A member's platforms ack in batches and each feed page marks
its orders delivered: during a reissue that is hundreds of small transactions queued behind
one writer, most of each one's time its commit. `GroupCommit.run` queues the unit of work;
one drainer takes everything queued, runs each in its own SAVEPOINT of one transaction and
commits once, then answers every caller. A caller is told its result only after that
commit, exactly as with `Database.run`.

Isolation: a unit that raises has its SAVEPOINT rolled back and gets its own exception; the
others commit. A database error (or a failed commit) fails the group, and each unit is then
run again alone through `Database.run` (its retries, its own transaction), so a caller sees
what it would have seen without grouping.

On PostgreSQL writers run concurrently on a pool and the server groups commits itself:
`run` is `Database.run` there.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from numbind.registry.storage.db import Database, Session
from sqlalchemy.exc import DBAPIError

__all__ = ["GroupCommit"]

T = TypeVar("T")

# Units per transaction: bounds how long one group holds the writer (an ack batch of 500
# is ~50 ms of work) so a replica's apply chunk is not kept waiting behind a huge group.
MAX_GROUP = 32

_Unit = tuple[Callable[[Session], Any], "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(self, db: Database, *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError(f"max_group: got {max_group}, want at least 1")
        self._db = db
        self._max = max_group
        self._queue: list[_Unit] = []
        self._drainer: asyncio.Task[None] | None = None
        # Transactions committed by the drainer (tests and benchmarks read it).
        self.groups = 0

    async def run(self, fn: Callable[[Session], T]) -> T:
        """`fn` in a transaction shared with whatever else is queued now; its result once
        that transaction committed."""
        if not self._db.is_sqlite:
            return await self._db.run(fn)
        loop = asyncio.get_running_loop()
        if self._drainer is not None and self._drainer.get_loop() is not loop:
            # A new event loop (a test's next asyncio.run): the old one's queue died with it.
            self._drainer, self._queue = None, []
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self._max], self._queue[self._max :]
            try:
                outcomes = await self._db.run(functools.partial(_each, group=group))
                self.groups += 1
            except Exception:
                # Each unit is run again alone and told its own outcome.
                await self._alone(group)
                continue
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():  # its caller went away (a stream closed)
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    async def _alone(self, group: list[_Unit]) -> None:
        for fn, future in group:
            try:
                value = await self._db.run(fn)
            except Exception as exc:  # handed to its caller
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(value)


def _each(session: Session, group: list[_Unit]) -> list[tuple[bool, Any]]:
    """Each unit in its own SAVEPOINT: (True, result) or (False, its exception, its writes
    rolled back). A database error fails the whole transaction (re-raised)."""
    out: list[tuple[bool, Any]] = []
    for fn, _ in group:
        try:
            with session.begin_nested():
                out.append((True, fn(session)))
        except DBAPIError:
            raise
        except Exception as exc:  # the unit's own failure, handed back
            out.append((False, exc))
    return out
