"""The store re-key: after a rotation, every stored token is multiplied by Delta = k_new/k_old.

It runs in the background of the registry process: started at start-up (so an interrupted
re-key resumes by itself) and woken by a rotation. One runner at a time holds the job's
lease, however many registry processes share the store; the others poll and take over if
the holder dies. Work is pipelined: batches are read ahead in keyset order, multiplied on
every core in the worker processes the token service also uses, and written back in order,
each batch in one transaction with the cursor (storage.rekey has the contracts). Requests
keep flowing meanwhile: they look rows up in both forms (services.tokenmap), so nothing
pauses longer than one batch's write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from numbind.protocol import rekey as rekey_algebra
from numbind.protocol.digest import binding_digest, bucket16
from numbind.registry.domain.types import now_us
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import rekey as store
from numbind.registry.storage.db import Database
from numbind.registry.workers import in_workers

log = logging.getLogger(__name__)

_US = 1_000_000
T = TypeVar("T")


def convert(
    table_no: int, delta: bytes, to_key_id: str, rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Rows (key, old token, *extra) -> (key, new token, *derived), ordered by new token.

    One scalar multiplication per row, plus for a binding its new bucket and digest. Runs
    in a worker process: module-level and free of any state but its arguments. The order
    lets the batch's UPDATEs insert their new index entries in key order.
    """
    if not rows:
        return []
    new = rekey_algebra.rekey_many(delta, [r[1] for r in rows])
    out: list[tuple[Any, ...]]
    if not store.TABLES[table_no].derived:
        out = [(r[0], n) for r, n in zip(rows, new, strict=True)]
    else:
        out = [
            (key, n, bucket16(n), binding_digest(to_key_id, n, ref, bound_us, kind))
            for (key, _, ref, bound_us, kind), n in zip(rows, new, strict=True)
        ]
    out.sort(key=lambda r: r[1])
    return out


@dataclass(frozen=True)
class RekeySettings:
    batch_rows: int = 5000
    # Sleep after each batch (tests use it to keep a re-key observably in progress).
    pause_seconds: float = 0.0
    # A runner that stops renewing (killed) loses the job after this long.
    lease_seconds: float = 30.0
    # Batches being multiplied at once: one per worker, and one more being read.
    in_flight: int = 3


class RekeyRunner:
    def __init__(
        self,
        db: Database,
        tokens: TokenMapper,
        executor: Executor,
        settings: RekeySettings,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._executor = executor
        self._settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._job: int | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._main(), name="numbind-rekey")

    def wake(self) -> None:
        """A rotation just committed here: start now rather than at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Stop after the batch in hand and hand the lease back (a clean restart resumes at
        once; a killed process's lease lapses after lease_seconds)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._give_back()

    async def _give_back(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            with contextlib.suppress(Exception):
                await self._db.run(partial(store.release, job_id=job, owner=self.owner))

    # -- the loop ---------------------------------------------------------------------
    async def _main(self) -> None:
        poll = max(0.2, min(5.0, self._settings.lease_seconds / 2))
        while not self._stopping.is_set():
            try:
                await self._once()
            except store.LeaseLost as exc:
                log.warning("%s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store re-key interrupted; retrying in %.0f s", poll)
                # Handed back, so that a process that can work takes it over: this one took
                # its own lease back after each failure, and others never got the job.
                await self._give_back()
            self._job = None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()

    def _leased(self, write: Callable[..., T], job_id: int, **args: Any) -> partial[T]:
        """``write`` to ``job_id`` as this runner, renewing its lease: held until
        lease_seconds from now."""
        now = now_us()
        until = now + int(self._settings.lease_seconds * _US)
        return partial(write, job_id=job_id, owner=self.owner, now=now, until=until, **args)

    async def _once(self) -> None:
        found = await self._db.run(store.running_job, write=False)
        if found is None:
            return
        job: store.Job = found
        if not await self._db.run(self._leased(store.acquire, job.id)):
            return  # another process runs it
        self._job = job.id
        log.info(
            "store re-key %d from %s to %s: %s",
            job.id,
            job.from_key_id,
            job.to_key_id,
            "resuming" if job.rows_done or job.table_no else "starting",
        )
        if job.rows_total is None:
            total = await self._db.run(
                partial(store.count_old, from_key_id=job.from_key_id), write=False
            )
            await self._db.run(self._leased(store.set_total, job.id, total=total))
        while not await self._sweep(job):
            # Cannot happen while requests keep to the key map; if it ever does, the rows
            # are not lost: sweep again from the start rather than declare the job done.
            await self._db.run(self._leased(store.restart, job.id))
            job = dataclasses.replace(job, table_no=0, cursor=None)
        await self._db.run(partial(store.finish, job_id=job.id, owner=self.owner, now=now_us()))
        self._job = None
        self._tokens.invalidate()
        log.info("store re-key %d done: every stored token is under %s", job.id, job.to_key_id)

    async def _sweep(self, job: store.Job) -> bool:
        """One pass over every table from the job's cursor; True if nothing is left behind."""
        settings = self._settings
        # (table, its converted rows being computed, the batch's last key) or a table's end.
        Work = asyncio.Future[list[tuple[Any, ...]]]
        queue: asyncio.Queue[tuple[int, Work | None, Any] | None]
        queue = asyncio.Queue(maxsize=max(1, settings.in_flight))

        async def read() -> None:
            table_no = job.table_no
            after = store.decode_cursor(store.TABLES[table_no], job.cursor) if job.cursor else None
            while table_no < len(store.TABLES):
                rows = await self._db.run(
                    partial(
                        store.read_batch,
                        table=store.TABLES[table_no],
                        from_key_id=job.from_key_id,
                        after=after,
                        limit=settings.batch_rows,
                    ),
                    write=False,
                )
                if rows:
                    work = asyncio.ensure_future(
                        in_workers(
                            self._executor, convert, table_no, job.delta, job.to_key_id, rows
                        )
                    )
                    after = rows[-1][0]
                    await queue.put((table_no, work, after))
                if len(rows) < settings.batch_rows:
                    table_no, after = table_no + 1, None
                    await queue.put((table_no, None, None))
            await queue.put(None)

        async def write() -> None:
            while (item := await queue.get()) is not None:
                table_no, work, last = item
                rows = await work if work is not None else []
                await self._db.run(
                    self._leased(
                        store.write_batch,
                        job.id,
                        table_no=table_no,
                        rows=rows,
                        last=last,
                        from_key_id=job.from_key_id,
                        to_key_id=job.to_key_id,
                    )
                )
                if settings.pause_seconds and rows:
                    await asyncio.sleep(settings.pause_seconds)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(read())
                group.create_task(write())
        except BaseExceptionGroup as exc:
            raise exc.exceptions[0] from None
        behind = await self._db.run(
            partial(store.left_behind, from_key_id=job.from_key_id), write=False
        )
        if behind:
            log.error("store re-key %d: rows left under %s in %s", job.id, job.from_key_id, behind)
        return not behind
