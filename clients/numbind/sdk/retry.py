"""Retries with jittered exponential backoff that honour the registry's retry-after hint."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from numbind.sdk.errors import NumbindClientError, from_rpc_error

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base: float = 0.1
    cap: float = 10.0
    # A retry-after hint longer than this is not slept out: the refusal is raised at once.
    # A rate limit's pacing (seconds) is waited; a daily cap's "come back at 00:00 UTC"
    # (hours) is not.
    longest_wait: float = 300.0

    def delay(self, attempt: int, hint: float | None) -> float:
        backoff = min(self.cap, self.base * 2.0**attempt) * (0.5 + random.random() / 2)
        return float(max(backoff, hint or 0.0))


def attempt_timeout(usual: float, rpc_timeout: float | None) -> float:
    """The deadline of one attempt: the call's ``usual`` one (30 s for a quick read, say),
    lowered to a client's ``rpc_timeout`` when that is shorter, so that ``rpc_timeout``
    bounds every attempt a client makes."""
    return usual if rpc_timeout is None else min(usual, rpc_timeout)


async def call_with_retry(fn: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
    """Await fn(); on UNAVAILABLE / RESOURCE_EXHAUSTED wait and try again (same request id).

    A refusal whose retry-after hint is longer than the policy's `longest_wait` is raised
    at once, hint and all: a platform at its daily token cap is told to come back at 00:00
    UTC, and sleeping that out (hours) left the caller hanging without a word."""
    policy = policy or RetryPolicy()
    for attempt in range(policy.attempts):
        try:
            return await fn()
        except grpc.RpcError as rpc_exc:
            exc: NumbindClientError = from_rpc_error(rpc_exc)
        if not exc.retryable or attempt == policy.attempts - 1:
            raise exc
        if exc.retry_after is not None and exc.retry_after > policy.longest_wait:
            raise exc
        await asyncio.sleep(policy.delay(attempt, exc.retry_after))
    raise AssertionError("unreachable")
