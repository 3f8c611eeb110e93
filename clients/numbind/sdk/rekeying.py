"""Waiting out a store re-key: after a key rotation the registry moves every stored token to
the new key in the background, and answers digests and lists again only when it is done.

A sync that meets a re-key waits, reporting the registry's progress as phase ``re-key``
(rows done of total); it never treats the re-key as a difference to reconcile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from numbind.sdk.errors import RekeyInProgress
from numbind.sdk.progress import Progress, ProgressCallback

__all__ = ["wait_out_rekey"]

T = TypeVar("T")


async def wait_out_rekey(
    call: Callable[[], Awaitable[T]],
    progress: ProgressCallback | None = None,
    *,
    patience: float | None = None,
) -> T:
    """``await call()``, waiting as long as the registry says it is re-keying.

    Sleeps the delay the registry states each time, and reports each answer's progress.
    ``patience`` bounds the total wait (seconds); past it the RekeyInProgress is raised.
    """
    started = time.monotonic()
    first_done: int | None = None
    while True:
        try:
            return await call()
        except RekeyInProgress as exc:
            waited = time.monotonic() - started
            if patience is not None and waited >= patience:
                raise
            if first_done is None:
                first_done = exc.rows_done
            if progress is not None:
                rate = (exc.rows_done - first_done) / waited if waited > 0 else 0.0
                progress(Progress("re-key", exc.rows_done, exc.rows_total, max(0.0, rate)))
            await asyncio.sleep(exc.retry_after or 1.0)
