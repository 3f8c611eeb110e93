"""Platforms.CheckReassigned from the client side: "has this number been given to a new
holder since D?", for platform and carrier bundles alike (both clients call this)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc
from numbind.protocol.limits import MAX_REASSIGNED_QUERIES, instant_problem
from numbind.sdk import wire
from numbind.sdk.errors import InvalidRequest, NumbindClientError, located, offset_positions
from numbind.sdk.model import Reassigned
from numbind.sdk.retry import RetryPolicy, attempt_timeout, call_with_retry
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

__all__ = ["check_reassigned"]


async def check_reassigned(
    channel: grpc.aio.Channel,
    tokenizer: Tokenizer,
    queries: Sequence[tuple[str, datetime]],
    retry: RetryPolicy | None = None,
    rpc_timeout: float | None = None,
) -> list[tuple[str, datetime, Reassigned]]:
    """(e164, since, answer) per (phone, since) query, in order, asked 1,000 at a time.

    A bad query fails before anything is sent, named by its 1-based position: InvalidNumber
    for the number, InvalidRequest (``"query 3: since: in the future"``) for the time.
    """
    for i, (_, since) in enumerate(queries):
        problem = instant_problem(since)
        if problem is not None:
            raise InvalidRequest(f"since: {problem}", item="query", position=i + 1)
    tokens = await tokenizer.tokenize([phone for phone, _ in queries])
    stub = platforms_pb2_grpc.PlatformsStub(channel)
    timeout = attempt_timeout(30, rpc_timeout)
    out: list[tuple[str, datetime, Reassigned]] = []
    for start in range(0, len(queries), MAX_REASSIGNED_QUERIES):
        chunk_tokens = tokens[start : start + MAX_REASSIGNED_QUERIES]
        sinces = [since for _, since in queries[start : start + MAX_REASSIGNED_QUERIES]]
        request = wire.reassigned_request(chunk_tokens, sinces)
        try:
            resp: platforms_pb2.CheckReassignedResponse = await call_with_retry(
                lambda request=request: stub.CheckReassigned(request, timeout=timeout),  # type: ignore[misc]
                retry,
            )
        except NumbindClientError as exc:
            where = offset_positions(start, len(sinces))
            raise located(exc, "queries", "query", where) from None
        answers = wire.reassigned_answers(resp, len(sinces))
        out += [
            (t.e164, since, a) for t, since, a in zip(chunk_tokens, sinces, answers, strict=True)
        ]
    return out
