"""A platform's rows and records turned into the batches ``BindingRpc`` sends.

``RowTokens`` normalises and tokenises (phone, account_id) rows; ``tokenising`` and
``precomputed`` make the ``prepare(chunk, start)`` callbacks that ``BindingRpc.publish`` and
``BindingRpc.withdraw`` run inside their pipelines; ``tokenised_fill`` and ``records_fill``
write a sync's snapshot into its store. Errors name items by their 1-based position in the
caller's input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from numbind.sdk.account_refs import AccountRefs
from numbind.sdk.bindings import Positions
from numbind.sdk.errors import NumbindClientError
from numbind.sdk.model import Item, Key, NumberAccount, Record, Row, to_us
from numbind.sdk.pipeline import Keyed, chunks, one_key, pipeline
from numbind.sdk.progress import Meter
from numbind.sdk.snapshot import SnapshotStore
from numbind.sdk.sync_options import SyncOptions
from numbind.sdk.tokenizer import Tokenizer

__all__ = [
    "RowTokens",
    "positions",
    "precomputed",
    "record_item",
    "records_fill",
    "tokenised_fill",
    "tokenising",
]

R = TypeVar("R")
V = TypeVar("V")
KR = TypeVar("KR", bound=Keyed)
# (key id, one value per row, E.164 per row) for rows starting at 0-based ``start``.
Tokenise = Callable[[Sequence[R], int, Meter | None], Awaitable[tuple[str, list[V], list[str]]]]
Prepare = Callable[[list[R], int], Awaitable[tuple[str, list[V], Positions]]]
# Writes a sync's snapshot into its store; returns the rows read.
Fill = Callable[[SnapshotStore], Awaitable[int]]


def positions(start: int, n: int) -> Positions:
    """The 1-based positions of ``n`` bindings starting at 0-based ``start``."""
    return "binding", list(range(start + 1, start + n + 1))


def record_item(r: Record) -> Item:
    return r.token, r.account_ref, to_us(r.bound_at), int(r.kind)


class RowTokens:
    """Tokens and account_refs for rows of numbers and account ids. ``refs`` is called
    when the first rows arrive (a bundle's AccountRefs creates its secret if absent)."""

    def __init__(self, tokenizer: Tokenizer, refs: Callable[[], AccountRefs]) -> None:
        self._tokenizer = tokenizer
        self._refs = refs

    async def keys(
        self, rows: Sequence[NumberAccount], start: int, tokenised: Meter | None = None
    ) -> tuple[str, list[Key], list[str]]:
        """(key id, (token, account_ref) per row, E.164 per row), in order; errors name rows
        by global position. The key id is the tokens' own: the tokenizer may move to a new
        key between calls after a rotation. ``tokenised`` counts rows as their tokens
        arrive (a thousand at a time)."""
        tokenizer, refs = self._tokenizer, self._refs()

        def prepare() -> tuple[list[str], list[bytes]]:
            # phonenumbers and HMAC are plain CPU work: off the loop thread.
            e164s = tokenizer.normalise((r.phone for r in rows), start)
            return e164s, [refs(r.account_id) for r in rows]

        e164s, account_refs = await asyncio.to_thread(prepare)
        key = await tokenizer.key()
        try:
            tokens = await tokenizer.tokenize_e164(
                e164s, key=key, on_done=tokenised.add if tokenised is not None else None
            )
        except NumbindClientError as exc:
            raise exc.shifted(start) from None
        keys = [(t.token, ref) for t, ref in zip(tokens, account_refs, strict=True)]
        return key.key_id, keys, e164s

    async def items(
        self, rows: Sequence[Row], start: int, tokenised: Meter | None = None
    ) -> tuple[str, list[Item], list[str]]:
        """``keys`` with each row's bound_at and kind."""
        key_id, keys, e164s = await self.keys(rows, start, tokenised)
        items = [
            (token, ref, to_us(r.bound_at), int(r.kind))
            for (token, ref), r in zip(keys, rows, strict=True)
        ]
        return key_id, items, e164s


def tokenising(tokenise: Tokenise[R, V], tokenised: Meter) -> Prepare[R, V]:
    """A batch of rows tokenised by ``tokenise`` (RowTokens.keys or .items), counted in
    ``tokenised``."""

    async def prepare(chunk: list[R], start: int) -> tuple[str, list[V], Positions]:
        key_id, values, _ = await tokenise(chunk, start, tokenised)
        return key_id, values, positions(start, len(chunk))

    return prepare


def precomputed(value: Callable[[KR], V]) -> Prepare[KR, V]:
    """A batch of precomputed records or keys, all under one key id (chunks_by_key)."""

    async def prepare(chunk: list[KR], start: int) -> tuple[str, list[V], Positions]:
        return chunk[0].key_id, [value(r) for r in chunk], positions(start, len(chunk))

    return prepare


def tokenised_fill(
    snapshot: Iterable[Row] | AsyncIterable[Row],
    tokens: RowTokens,
    total: int | None,
    options: SyncOptions,
) -> Fill:
    """Tokenise the snapshot's rows into the store, ``options.in_flight`` batches at once."""

    async def fill(store: SnapshotStore) -> int:
        meter = Meter("tokenise", total, options.progress).start()

        async def work(batch: tuple[int, list[Row]]) -> None:
            start, rows = batch
            key_id, items, e164s = await tokens.items(rows, start, meter)
            await store.run(store.add, key_id, items, start, e164s)

        await pipeline(chunks(snapshot, options.batch_size), work, options.in_flight)
        return meter.done

    return fill


def records_fill(
    snapshot: Iterable[Record] | AsyncIterable[Record], total: int | None, options: SyncOptions
) -> Fill:
    """Load precomputed records into the store; ValueError names one under a second key."""

    async def fill(store: SnapshotStore) -> int:
        meter = Meter("load", total, options.progress).start()
        async for start, chunk in chunks(snapshot, options.batch_size):
            items = [record_item(r) for r in chunk]
            await store.run(store.add, one_key(chunk, start), items, start)
            meter.add(len(chunk))
        return meter.done

    return fill
