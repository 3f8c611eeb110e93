"""Platforms.CheckReassigned from the client side: "has this number been given to a new
holder since D?", for platform and carrier bundles alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.sdk.platform import to_us
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc

MAX_QUERIES = 1_000  # the registry's limit per request
ANSWERS = {1: "REASSIGNED", 2: "NOT_REASSIGNED", 3: "NO_DATA"}


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(to_us(when))
    return ts


async def check_reassigned(
    channel: grpc.aio.Channel,
    tokenizer: Tokenizer,
    queries: Sequence[tuple[str, datetime]],
    retry: RetryPolicy | None = None,
) -> list[tuple[str, datetime, str]]:
    """(e164, since, answer) per (phone, since) query, in order, asked 1,000 at a time."""
    tokens = await tokenizer.tokenize([phone for phone, _ in queries])
    stub = platforms_pb2_grpc.PlatformsStub(channel)
    out: list[tuple[str, datetime, str]] = []
    for start in range(0, len(queries), MAX_QUERIES):
        chunk = list(
            zip(
                tokens[start : start + MAX_QUERIES],
                queries[start : start + MAX_QUERIES],
                strict=True,
            )
        )
        request = platforms_pb2.CheckReassignedRequest(
            queries=[
                platforms_pb2.ReassignedQuery(
                    token=common_pb2.Token(key_id=t.key_id, value=t.token), since=_ts(since)
                )
                for t, (_, since) in chunk
            ]
        )
        resp: platforms_pb2.CheckReassignedResponse = await call_with_retry(
            lambda request=request: stub.CheckReassigned(request, timeout=30),  # type: ignore[misc]
            retry,
        )
        if len(resp.answers) != len(chunk):
            raise ValueError(
                f"registry answered {len(resp.answers)} of {len(chunk)} reassigned queries"
            )
        out += [
            (t.e164, since, ANSWERS.get(a, "?"))
            for (t, (_, since)), a in zip(chunk, resp.answers, strict=True)
        ]
    return out
