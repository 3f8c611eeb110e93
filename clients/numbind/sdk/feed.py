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
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

import grpc
from numbind.sdk.errors import NumbindClientError, from_rpc_error
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

# Where a platform's cursor lives by default: in its bundle directory.
CURSOR_FILE = "feed-cursor.json"


class AckOutcome(IntEnum):
    UNBOUND = 1
    ALREADY_GONE = 2
    REJECTED = 3
    NOTED = 4


class EventKind(IntEnum):
    REVOKE = 1
    NUMBER_DEACTIVATED = 2


def _dt(ts: object) -> datetime | None:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return datetime.fromtimestamp(seconds + nanos / 1e9, UTC)


@dataclass
class FeedEvent:
    seq: int
    order_id: str
    kind: EventKind
    cause: int
    token: bytes
    key_id: str
    account_ref: bytes
    bound_at: datetime | None
    tenure_start: datetime | None
    deadline: datetime | None
    revocation_id: str
    _feed: EventFeed = field(repr=False)

    async def ack(self, outcome: AckOutcome | None = None, reason: str = "") -> None:
        """Ack this event; notices default to NOTED, revocations must name an outcome."""
        if outcome is None:
            if self.kind != EventKind.NUMBER_DEACTIVATED:
                raise ValueError("a revocation order needs an outcome")
            outcome = AckOutcome.NOTED
        await self._feed.ack([(self, outcome, reason)])


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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"acked_through": seq}))
        os.replace(tmp, self.path)


class EventFeed:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        cursor_file: Path | str | None = None,
        *,
        after_seq: int | None = None,
        heartbeat_seconds: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._stub = platforms_pb2_grpc.PlatformsStub(channel)
        self._cursor = CursorStore(Path(cursor_file) if cursor_file else None)
        self._acked_through = self._cursor.load() if after_seq is None else after_seq
        self._heartbeat = heartbeat_seconds
        self._retry = retry or RetryPolicy(attempts=1_000_000, cap=10.0)
        self._acked: set[int] = set()
        self.head_seq = 0
        self.reconnects = 0

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
        request = platforms_pb2.AckEventsRequest(
            request_id=uuid.uuid4().hex,
            acks=[
                platforms_pb2.Ack(order_id=e.order_id, outcome=int(o), reason=r)  # type: ignore[arg-type]
                for e, o, r in items
            ],
        )
        await call_with_retry(lambda: self._stub.AckEvents(request, timeout=30), RetryPolicy())
        self._advance([e.seq for e, _, _ in items])

    def _event(self, e: platforms_pb2.Event) -> FeedEvent:
        return FeedEvent(
            seq=e.seq,
            order_id=e.order_id,
            kind=EventKind(e.kind),
            cause=e.cause,
            token=bytes(e.binding.token.value),
            key_id=e.binding.token.key_id,
            account_ref=bytes(e.binding.account_ref),
            bound_at=_dt(e.binding.bound_at),
            tenure_start=_dt(e.tenure_start),
            deadline=_dt(e.deadline),
            revocation_id=e.revocation_id,
            _feed=self,
        )

    async def events(self, *, follow: bool = True) -> AsyncIterator[FeedEvent]:
        """Events after the cursor. With follow=False, stop at the first idle heartbeat."""
        attempt = 0
        seen_through = self._acked_through
        while True:
            request = platforms_pb2.StreamEventsRequest(
                after_seq=self._acked_through,
                heartbeat_seconds=self._heartbeat or (1 if not follow else 0),
            )
            call = self._stub.StreamEvents(request)
            try:
                async for item in call:
                    attempt = 0
                    if item.HasField("heartbeat"):
                        self.head_seq = item.heartbeat.head_seq
                        if not follow and seen_through >= self.head_seq:
                            return
                        continue
                    for event in item.events.events:
                        seen_through = max(seen_through, event.seq)
                        yield self._event(event)
                return
            except grpc.RpcError as rpc_exc:
                exc: NumbindClientError = from_rpc_error(rpc_exc)
                if not exc.retryable or attempt + 1 >= self._retry.attempts:
                    raise exc from None
                self.reconnects += 1
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
                attempt += 1
            finally:
                call.cancel()

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self.events()


__all__ = ["CURSOR_FILE", "AckOutcome", "CursorStore", "EventFeed", "EventKind", "FeedEvent"]
