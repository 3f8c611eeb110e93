"""A platform's event feed: an async iterator that resumes from a persisted cursor,
reconnects with backoff, and acks per event.

    async for event in EventFeed(channel, cursor_file):
        seal_account(event.account_ref)
        await event.ack(AckOutcome.UNBOUND)

The cursor is the highest sequence number up to which every event has been acked; it is
written atomically after acks, so a crash replays at most the unacked tail (delivery is
at-least-once; apply events idempotently by order_id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from numbind.protocol.files import write_atomically
from numbind.sdk import wire
from numbind.sdk.errors import (
    ErrorCode,
    NumbindClientError,
    Unavailable,
    from_rpc_error,
    located,
    offset_positions,
)
from numbind.sdk.log import LogClient, LogProofError
from numbind.sdk.model import AckOutcome, FeedEvent
from numbind.sdk.retry import RetryPolicy, attempt_timeout, call_with_retry
from numbind.v1 import platforms_pb2_grpc

__all__ = ["CURSOR_FILE", "FOLLOW_RETRY", "CursorStore", "EventFeed"]

# Where a platform's cursor lives by default: in its bundle directory.
CURSOR_FILE = "feed-cursor.json"

# A follower outlives any outage (a registry down for the night is waited for, at most
# 10 s between tries); a one-off read gives up like any other call (RetryPolicy()).
FOLLOW_RETRY = RetryPolicy(attempts=1_000_000, cap=10.0)
log = logging.getLogger(__name__)


class CursorStore:
    """The resume point, in a small JSON file (atomic replace)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        return int(json.loads(self.path.read_text())["acked_through"])

    def save(self, seq: int) -> None:
        if self.path is None:
            return
        write_atomically(self.path, json.dumps({"acked_through": seq}).encode(), 0o600)


class EventFeed:
    """This platform's events after ``acked_through`` (the cursor file's, or ``after_seq``).

    Reconnects with backoff on UNAVAILABLE and when a registry ends the stream as it stops
    (a rolling restart); ``head_seq`` is the registry's latest sequence
    as of the last heartbeat, ``reconnects`` counts reconnections.

    ``retry`` None means FOLLOW_RETRY when following (reconnect for ever) and the default
    ``RetryPolicy()`` otherwise, which then raises Unavailable once it runs out.
    ``ack_retry`` (default ``RetryPolicy()``) bounds each ack, following or not: an ack
    that cannot land must reach its caller, which holds the account sealed meanwhile. Not
    following, each connection must send something (an event or a heartbeat) within
    ``rpc_timeout`` seconds, or it counts as a failed try: a registry that accepts
    connections but never answers (stopped, or behind a black hole) is given up on too.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        cursor_file: Path | str | None = None,
        *,
        after_seq: int | None = None,
        heartbeat_seconds: int = 0,
        retry: RetryPolicy | None = None,
        ack_retry: RetryPolicy | None = None,
        log: LogClient | None = None,
        rpc_timeout: float = 120.0,
    ) -> None:
        self._stub = platforms_pb2_grpc.PlatformsStub(channel)
        self._cursor = CursorStore(Path(cursor_file) if cursor_file else None)
        self._acked_through = self._cursor.load() if after_seq is None else after_seq
        self._heartbeat = heartbeat_seconds
        self._retry = retry
        self._ack_retry = ack_retry or RetryPolicy()
        self._timeout = rpc_timeout
        self._acked: set[int] = set()
        self.head_seq = 0
        self.reconnects = 0
        # With a LogClient, every order is proved logged before it is acked.
        self._log = log
        self.orders_proved = 0

    @property
    def acked_through(self) -> int:
        return self._acked_through

    def _advance(self, seqs: list[int]) -> None:
        self._acked.update(seqs)
        moved = False
        while self._acked_through + 1 in self._acked:
            self._acked_through += 1
            self._acked.discard(self._acked_through)
            moved = True
        if moved:
            self._cursor.save(self._acked_through)

    async def ack(self, items: list[tuple[FeedEvent, AckOutcome, str]]) -> None:
        """Ack events with their outcomes (and a reason for REJECTED), in one request.

        With a LogClient, first proves each order is in a checkpoint its trust policy
        accepts, opened as this very order; LogProofError (nothing acked) otherwise."""
        if self._log is not None:
            await self._prove([e for e, _, _ in items])
        request = wire.ack_request(uuid.uuid4().hex, items)
        try:
            await call_with_retry(
                lambda: self._stub.AckEvents(request, timeout=attempt_timeout(30, self._timeout)),
                self._ack_retry,
            )
        except NumbindClientError as exc:
            raise located(exc, "acks", "event", offset_positions(0, len(items))) from None
        self._advance([e.seq for e, _, _ in items])

    async def _prove(self, events: list[FeedEvent]) -> None:
        assert self._log is not None
        logged = [e for e in events if e.leaf_index is not None]
        if len(logged) != len(events):
            missing = next(e for e in events if e.leaf_index is None)
            raise LogProofError("inclusion", f"order {missing.order_id} names no log leaf")
        proved = await self._log.prove([e.leaf_index for e in logged if e.leaf_index is not None])
        for event, leaf in zip(logged, proved, strict=True):
            entry = leaf.entry or {}
            if entry.get("t") != "order" or entry.get("id") != event.order_id:
                raise LogProofError(
                    "opening",
                    f"leaf {leaf.index} does not open as order {event.order_id} for this platform",
                )
        self.orders_proved += len(logged)

    async def events(self, *, follow: bool = True) -> AsyncGenerator[FeedEvent, None]:
        """Events after the cursor. With follow=False, stop at the first idle heartbeat.
        aclose() ends the stream (its call is cancelled) without waiting for the next event."""
        policy = self._retry or (FOLLOW_RETRY if follow else RetryPolicy())
        attempt = 0
        seen_through = self._acked_through
        while True:
            heartbeat = self._heartbeat or (1 if not follow else 0)
            request = wire.stream_request(self._acked_through, heartbeat)
            call = self._stub.StreamEvents(request)
            try:
                if not follow:
                    await self._answered(call)
                async for item in call:
                    head_seq, events = wire.stream_item(item, self)
                    # A follower that hears anything is connected again. A one-off read
                    # counts a try as lost unless it read further: a registry that keeps
                    # ending the stream after resending the same events is no progress.
                    if follow or any(e.seq > seen_through for e in events):
                        attempt = 0
                    if head_seq is not None:  # a heartbeat
                        self.head_seq = head_seq
                        if not follow and seen_through >= self.head_seq:
                            return
                        continue
                    for event in events:
                        seen_through = max(seen_through, event.seq)
                        yield event
                # The registry ends a stream only when it stops (a rolling restart): a
                # follower resumes on another process, unless told not to retry at all. A
                # one-off read resumes too: it ends at the heartbeat that says it caught up
                # (above), and a stream cut before that one left events unread.
                if attempt + 1 >= policy.attempts:
                    if follow:
                        return
                    raise Unavailable(
                        "the registry ended the event stream before this reader caught up "
                        f"(read through {seen_through}); read again to resume from the cursor"
                    )
                self.reconnects += 1
                await asyncio.sleep(policy.delay(attempt, None))
                attempt += 1
                continue
            except (grpc.RpcError, NumbindClientError) as caught:
                exc = caught if isinstance(caught, NumbindClientError) else from_rpc_error(caught)
                # CANCELLED here comes from the other side (our own cancellation raises
                # CancelledError instead): a registry that stopped before the stream could
                # end itself, or a proxy dropping it. Resuming from the cursor is safe.
                cut = exc.code == ErrorCode.CANCELLED
                if not (exc.retryable or cut) or attempt + 1 >= policy.attempts:
                    raise exc from None
                self.reconnects += 1
                delay = policy.delay(attempt, exc.retry_after)
                # A follower retries for as long as it is iterated: say why, or a stream
                # refused for good (a principal over its stream limit, a registry that is
                # gone) is a program that waits in silence. The first few tries, then
                # one in ten. (A one-off read gives up soon, and raises saying why.)
                if follow and (attempt < 3 or attempt % 10 == 0):
                    log.warning(
                        "event stream: %s (%s); reconnecting in %.1f s",
                        exc.message,
                        exc.code,
                        delay,
                    )
                await asyncio.sleep(delay)
                attempt += 1
            finally:
                call.cancel()

    async def _answered(self, call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
        # The registry's headers come with its first event or heartbeat. grpc's own connect
        # deadline does not cover a registry that took the connection and then stopped
        # answering: without this bound a one-off read could wait for ever. (A call that
        # fails returns empty headers here and raises when read.)
        try:
            await asyncio.wait_for(call.initial_metadata(), self._timeout)
        except TimeoutError:
            raise Unavailable(
                f"the registry sent nothing within {self._timeout:g} s",
                ErrorCode.DEADLINE_EXCEEDED,
            ) from None

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self.events()
