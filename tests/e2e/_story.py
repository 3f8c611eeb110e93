"""Helpers for the revocation end-to-end tests: real carriers and platforms over gRPC."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from numbind.protocol.bundle import Bundle
from numbind.sdk import CarrierClient, EventFeed, FeedEvent
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import Tokenizer, TokenResult
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

NOW = datetime.now(UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


async def tokenize(bundle: Bundle, phone: str) -> TokenResult:
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel)
        try:
            (result,) = await tok.tokenize([phone])
        finally:
            tok.close()
    return result


async def publish(
    bundle: Bundle, token: TokenResult, accounts: list[tuple[bytes, datetime]]
) -> platforms_pb2.PublishBindingsResponse:
    async with secure_channel(bundle) as channel:
        stub = platforms_pb2_grpc.PlatformsStub(channel)
        return await stub.PublishBindings(
            platforms_pb2.PublishBindingsRequest(
                request_id=uuid.uuid4().hex,
                bindings=[
                    common_pb2.Binding(
                        token=common_pb2.Token(key_id=token.key_id, value=token.token),
                        account_ref=ref,
                        bound_at=ts(when),
                        kind=common_pb2.BINDING_KIND_LOGIN,
                    )
                    for ref, when in accounts
                ],
            )
        )


def carrier(bundle: Bundle) -> CarrierClient:
    return CarrierClient(bundle)


async def take(bundle: Bundle, cursor: Path, n: int, within: float = 15.0) -> list[FeedEvent]:
    """The next n events of a platform's feed (not acked)."""
    got: list[FeedEvent] = []
    async with secure_channel(bundle) as channel:

        async def read() -> None:
            async for event in EventFeed(channel, cursor).events():
                got.append(event)
                if len(got) == n:
                    return

        await asyncio.wait_for(read(), within)
    return got
