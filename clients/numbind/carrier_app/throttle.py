"""How the app slows guessing without letting anyone lock a subscriber out.

Two throttles, on two keys (README, "The carrier app", says why these):

- Per client address, a token bucket (``TokenBucket``, in memory, per process) on each
  public form: sign-in (both steps) and the reassigned check. A burst of ``per_minute``
  and then ``per_minute`` a minute; an IPv6 client is keyed by its /64, which one
  subscriber line usually gets whole.
- Per number, an exponential back-off (``number_delay``, kept in the subscriber store so
  every process sees it): after ``FREE_FAILURES`` failed tries on a number (a wrong ID
  tail or a wrong code), the next try of the first step waits 1 s, then 2, 4 … never more
  than ``BACKOFF_CAP_SECONDS``. A try during the wait is refused without being checked or
  counted, so no amount of failing pushes the wait past the cap; failures are forgotten an
  hour after the last one, and at a successful sign-in. The code step is never delayed by
  the number's failures: a code is tried only on the challenge it was sent for (five wrong
  codes end that challenge), and only whoever passed the first step holds one.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

__all__ = [
    "BACKOFF_CAP_SECONDS",
    "FORGET_SECONDS",
    "FREE_FAILURES",
    "TokenBucket",
    "client_key",
    "number_delay",
]

FREE_FAILURES = 3
BACKOFF_CAP_SECONDS = 60.0
FORGET_SECONDS = 3600.0
_MAX_KEYS = 10_000


def number_delay(failures: int) -> float:
    """How long a number's first sign-in step waits after its ``failures``-th failure."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(BACKOFF_CAP_SECONDS, 2.0 ** (failures - FREE_FAILURES))


def client_key(request: Request) -> str:
    """The key a client's address is throttled under: the address, or its /64 for IPv6."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """``per_minute`` tries at once, then ``per_minute`` a minute, per key."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._now = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one try: 0 if allowed, else the seconds until one is (nothing spent)."""
        now = self._now()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._forget_full(now)
            b = self._buckets[key] = _Bucket(self._capacity, now)
        b.tokens = min(self._capacity, b.tokens + (now - b.at) * self._rate)
        b.at = now
        if b.tokens >= 1:
            b.tokens -= 1
            return 0.0
        return (1 - b.tokens) / self._rate

    def allow(self, key: str) -> bool:
        return self.take(key) == 0

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those.
        self._buckets = {
            k: b
            for k, b in self._buckets.items()
            if b.tokens + (now - b.at) * self._rate < self._capacity
        }


def seconds_text(seconds: float) -> int:
    """A wait as whole seconds, rounded up, for a page."""
    return max(1, math.ceil(seconds))
