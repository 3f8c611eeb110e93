"""Batching with back-pressure: a bounded queue feeding a few concurrent workers.

The SDK streams inputs of any size (a 10-million-row file, an async generator) through
these: memory holds about ``2 * in_flight`` batches whatever the input size, and every
batch carries its start index so errors can name the caller's item.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from typing import Protocol, TypeVar

__all__ = ["chunks", "chunks_by_key", "iterate", "one_key", "pipeline"]

T = TypeVar("T")


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def pipeline(
    source: AsyncIterator[T], worker: Callable[[T], Awaitable[None]], in_flight: int
) -> None:
    """Run worker over source with in_flight workers behind a bounded queue.

    The bounded queue is the back-pressure: the source is read only as fast as batches
    complete. The first failure cancels the rest and is raised as itself, not as a group.
    """
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize=in_flight)

    async def consume() -> None:
        while (entry := await queue.get()) is not None:
            await worker(entry[0])

    try:
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(consume()) for _ in range(in_flight)]
            async for item in source:
                await queue.put((item,))
            for _ in workers:
                await queue.put(None)
    except BaseExceptionGroup as exc:
        # Callers expect the SDK's own exception, not a group of one.
        raise _first_error(exc) from None
    finally:
        # After a failure the source is left mid-way; close it now rather than at GC time.
        if isinstance(source, AsyncGenerator):
            await source.aclose()


async def chunks(
    source: Iterable[T] | AsyncIterable[T], size: int
) -> AsyncIterator[tuple[int, list[T]]]:
    """(0-based start index, up to size items); yields the loop between slices of a sync
    source."""
    start, chunk = 0, []
    if isinstance(source, AsyncIterable):
        async for item in source:
            chunk.append(item)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
    else:
        for item in source:
            chunk.append(item)
            if len(chunk) % 1000 == 0:
                # Reading and parsing a file is CPU work on the loop thread: let RPCs breathe.
                await asyncio.sleep(0)
            if len(chunk) == size:
                yield start, chunk
                start, chunk = start + size, []
    if chunk:
        yield start, chunk


async def iterate(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


class Keyed(Protocol):
    @property
    def key_id(self) -> str: ...


def one_key(chunk: Sequence[Keyed], start: int) -> str:
    """The one key id of a chunk starting at 0-based ``start``; ValueError naming the
    first record (1-based) under another key."""
    key_id = chunk[0].key_id
    for i, item in enumerate(chunk):
        if item.key_id != key_id:
            raise ValueError(
                f"record {start + i + 1:,}: key_id: got {item.key_id}, want {key_id} "
                "(one key id a call)"
            )
    return key_id


K = TypeVar("K", bound=Keyed)


async def chunks_by_key(
    source: Iterable[K] | AsyncIterable[K], size: int
) -> AsyncIterator[tuple[int, list[K]]]:
    """Like chunks, but a batch never mixes key ids (a request carries one per item, but
    one key a batch keeps a rotation's two populations apart)."""
    start = 0
    async for _, chunk in chunks(source, size):
        run_start = 0
        for i in range(1, len(chunk) + 1):
            if i == len(chunk) or chunk[i].key_id != chunk[run_start].key_id:
                yield start + run_start, chunk[run_start:i]
                run_start = i
        start += len(chunk)
