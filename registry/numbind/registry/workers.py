"""The process's crypto workers (VOPRF evaluation, re-key conversion): a process pool that
replaces itself when one of its workers dies.

A `ProcessPoolExecutor` whose worker dies (the kernel's OOM killer, a stray signal) is
broken for good: every later submit raises `BrokenProcessPool`. Kept, that turned every
tokenisation into INTERNAL and held a store re-key still for as long as the process ran,
its runner retrying on the broken pool and renewing its own lease, so no other process
took the job over. The work here is pure (the same inputs give the same output), so a call
the death cut short runs once more, on a fresh pool.

The workers ignore SIGINT and SIGTERM: a stop signalled to the whole process group (Ctrl-C
in a terminal, systemd's KillMode=control-group) is the registry's to carry out, draining
its calls, and used to kill the workers under the calls still in flight. A worker still
ends with its registry: it watches for its parent to go (an idle worker of a killed
registry used to live on, orphaned, holding its memory).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar

from numbind.registry.errors import Unavailable

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _worker_start() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:  # re-parented once the registry is gone
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(0)


_PARENT_CHECK_SECONDS = 1.0


class CryptoWorkers(Executor):
    """`workers` spawned processes; a pool found broken at submit is replaced first."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._pool = self._spawn()
        self.replaced = 0  # pools replaced since start (a worker died each time)

    def _spawn(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
        )

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._replace()
                return self._pool.submit(fn, *args, **kwargs)

    def _replace(self) -> None:
        log.warning("a crypto worker died; starting %d fresh ones", self._workers)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._spawn()
        self.replaced += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


async def in_workers(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` (pure) in `executor`; run once more if a worker died under it, then
    Unavailable (which clients retry), never the pool's own error."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, fn, *args)
    except BrokenProcessPool:
        pass
    try:
        return await loop.run_in_executor(executor, fn, *args)
    except BrokenProcessPool:
        raise Unavailable("the registry's crypto workers stopped; try again") from None
