"""The Platforms binding RPCs: publish and withdraw in pipelined batches, digests, pages.

Every request goes through ``call_with_retry`` under a request id that is stable across
its retries, so the registry answers a retried batch as it answered the first try. When
the registry refuses one binding, the error names it by its position in the caller's input.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from itertools import count
from typing import TypeVar

from numbind.protocol.limits import MAX_PAGE_SIZE
from numbind.sdk import wire
from numbind.sdk.errors import NumbindClientError, list_positions, located
from numbind.sdk.model import BucketDigest, Item, Key, PublishSummary, WithdrawSummary
from numbind.sdk.pipeline import pipeline
from numbind.sdk.progress import Meter, ProgressCallback
from numbind.sdk.rekeying import wait_out_rekey
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

__all__ = ["BindingRpc", "Positions", "PublishBatch", "WithdrawBatch"]

T = TypeVar("T")
# The 1-based positions, in the caller's input, of a batch's items; and what they count.
Positions = tuple[str, list[int]]
PublishBatch = tuple[str, list[Item], Positions]  # key id, bindings, positions
WithdrawBatch = tuple[str, list[Key], Positions]


class BindingRpc:
    """One platform's binding calls over one stub, ``in_flight`` requests at a time."""

    def __init__(
        self,
        stub: platforms_pb2_grpc.PlatformsAsyncStub,
        *,
        in_flight: int,
        retry: RetryPolicy,
        timeout: float,
    ) -> None:
        self._stub = stub
        self._in_flight = in_flight
        self._retry = retry
        self._timeout = timeout
        # Request ids: unique per client, stable across the retries of one batch.
        self._session = uuid.uuid4().hex
        self._seq = count(1)

    def _request_id(self, verb: str) -> str:
        return f"{verb}-{self._session}-{next(self._seq)}"

    async def send_publish(
        self, key_id: str, items: list[Item], positions: Positions
    ) -> tuple[int, int, int, int, int, int]:
        """(inserted, updated, unchanged, left revoked, revoked on arrival, duplicates)
        for one batch."""
        # The registry upserts by (token, account_ref); a repeat inside one request is
        # ambiguous, so the later row wins here (and names the binding in errors).
        item, where = positions
        unique: dict[Key, tuple[Item, int]] = {}
        for binding, pos in zip(items, where, strict=True):
            unique[(binding[0], binding[1])] = (binding, pos)
        request = wire.publish_request(
            self._request_id("pub"), key_id, [b for b, _ in unique.values()]
        )
        try:
            resp: platforms_pb2.PublishBindingsResponse = await call_with_retry(
                lambda: self._stub.PublishBindings(request, timeout=self._timeout), self._retry
            )
        except NumbindClientError as exc:
            sent = [pos for _, pos in unique.values()]
            raise located(exc, "bindings", item, list_positions(sent)) from None
        return (*wire.publish_counts(resp), len(items) - len(unique))

    async def send_withdraw(
        self, key_id: str, keys: list[Key], positions: Positions, keep_at_least: int = 0
    ) -> tuple[int, int]:
        """(withdrawn, not found) for one batch; `keep_at_least`: see WithdrawBindings."""
        item, where = positions
        unique: dict[Key, int] = {}
        for key, pos in zip(keys, where, strict=True):
            unique.setdefault(key, pos)
        request = wire.withdraw_request(self._request_id("wd"), key_id, list(unique), keep_at_least)
        try:
            resp: platforms_pb2.WithdrawBindingsResponse = await call_with_retry(
                lambda: self._stub.WithdrawBindings(request, timeout=self._timeout), self._retry
            )
        except NumbindClientError as exc:
            raise located(exc, "bindings", item, list_positions(list(unique.values()))) from None
        # A key repeated in the input names a binding the first copy already withdrew.
        withdrawn, not_found = wire.withdraw_counts(resp)
        return withdrawn, not_found + len(keys) - len(unique)

    async def publish(
        self,
        batches: AsyncIterator[tuple[int, list[T]]],
        prepare: Callable[[list[T], int], Awaitable[PublishBatch]],
        meter: Meter,
    ) -> PublishSummary:
        """Publish every batch; ``prepare(chunk, start)`` turns the caller's items into
        bindings (tokenising them if need be) inside the pipeline."""
        # inserted, updated, unchanged, revoked, revoked on arrival, duplicates, batches
        totals = [0] * 7

        async def work(batch: tuple[int, list[T]]) -> None:
            start, rows = batch
            for i, n in enumerate(await self.send_publish(*await prepare(rows, start))):
                totals[i] += n
            totals[6] += 1
            meter.add(len(rows))

        await pipeline(batches, work, self._in_flight)
        inserted, updated, unchanged, revoked, arrived, duplicates, n_batches = totals
        return PublishSummary(
            meter.done,
            inserted,
            updated,
            unchanged,
            duplicates,
            n_batches,
            meter.seconds,
            revoked,
            arrived,
        )

    async def withdraw(
        self,
        batches: AsyncIterator[tuple[int, list[T]]],
        prepare: Callable[[list[T], int], Awaitable[WithdrawBatch]],
        meter: Meter,
        *,
        keep_at_least: int = 0,
    ) -> WithdrawSummary:
        totals = [0, 0, 0]  # withdrawn, not_found, batches

        async def work(batch: tuple[int, list[T]]) -> None:
            start, rows = batch
            key_id, keys, positions = await prepare(rows, start)
            withdrawn, not_found = await self.send_withdraw(key_id, keys, positions, keep_at_least)
            totals[0] += withdrawn
            totals[1] += not_found
            totals[2] += 1
            meter.add(len(rows))

        await pipeline(batches, work, self._in_flight)
        return WithdrawSummary(meter.done, totals[0], totals[1], totals[2], meter.seconds)

    async def digest(self, bits: int, key_id: str) -> dict[int, BucketDigest]:
        buckets, _ = await self.digest_and_revoked(bits, key_id)
        return buckets

    async def digest_and_revoked(
        self, bits: int, key_id: str
    ) -> tuple[dict[int, BucketDigest], int]:
        """The non-empty buckets, and how many of the platform's bindings are revoked."""
        request = wire.digest_request(bits, key_id)
        resp: platforms_pb2.GetDigestResponse = await call_with_retry(
            lambda: self._stub.GetDigest(request, timeout=self._timeout), self._retry
        )
        return wire.bucket_digests(resp, bits), resp.revoked

    async def revoked(
        self,
        bits: int,
        bucket: int,
        key_id: str,
        *,
        wait_rekey: bool = False,
        progress: ProgressCallback | None = None,
    ) -> dict[Key, int]:
        """The platform's revoked bindings in one bucket: (token, account_ref) -> when.

        With ``wait_rekey`` a store re-key is waited out (reported to ``progress``); by
        default it raises RekeyInProgress."""
        out: dict[Key, int] = {}
        page_token = ""
        while True:
            request = wire.list_request(bits, bucket, key_id, MAX_PAGE_SIZE, page_token)
            call = partial(
                call_with_retry,
                partial(self._stub.ListRevokedBindings, request, timeout=self._timeout),
                self._retry,
            )
            resp: platforms_pb2.ListRevokedBindingsResponse = await (
                wait_out_rekey(call, progress) if wait_rekey else call()
            )
            out.update(wire.revoked_item(b) for b in resp.bindings)
            page_token = resp.next_page_token
            if not page_token:
                return out

    async def pages(
        self,
        bits: int,
        bucket: int,
        key_id: str,
        page_size: int,
        convert: Callable[[common_pb2.Binding], T],
        *,
        wait_rekey: bool = False,
        progress: ProgressCallback | None = None,
    ) -> AsyncIterator[list[T]]:
        """One bucket's bindings a page at a time, each converted (wire.record, wire.item_of).

        With ``wait_rekey`` a store re-key is waited out (reported to ``progress``); by
        default it raises RekeyInProgress."""
        page_token = ""
        while True:
            request = wire.list_request(bits, bucket, key_id, page_size, page_token)
            call = partial(
                call_with_retry,
                partial(self._stub.ListBindings, request, timeout=self._timeout),
                self._retry,
            )
            resp: platforms_pb2.ListBindingsResponse = await (
                wait_out_rekey(call, progress) if wait_rekey else call()
            )
            yield [convert(b) for b in resp.bindings]
            page_token = resp.next_page_token
            if not page_token:
                return
