"""Throttles for the app's public forms (in memory, per process)."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["RateLimit"]


class RateLimit:
    """At most ``per_minute`` calls per key (a client address) in any 60 s."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        q = self._seen.setdefault(who, deque())
        while q and q[0] <= now - 60:
            q.popleft()
        if len(q) >= self._per_minute:
            return False
        q.append(now)
        if len(self._seen) > 10_000:
            # Keep only clients seen in the last minute; older queues are spent.
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - 60}
        return True
