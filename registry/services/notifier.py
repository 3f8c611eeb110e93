"""Wakes a platform's open event streams when its feed grows.

In-process only: writers call notify() after their transaction commits. Streams also poll
at the heartbeat interval, so with several registry instances behind a load balancer an
event appended by another instance is delivered within one interval (PostgreSQL
LISTEN/NOTIFY would close that gap; see README, "Scaling out").
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class FeedNotifier:
    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)

    def notify(self, platform_pks: Iterable[int]) -> None:
        for pk in platform_pks:
            for event in self._waiters.get(pk, ()):
                event.set()

    async def wait(self, platform_pk: int, seconds: float) -> bool:
        """True if woken by notify(), False on timeout."""
        event = asyncio.Event()
        self._waiters[platform_pk].add(event)
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters[platform_pk].discard(event)
            if not self._waiters[platform_pk]:
                del self._waiters[platform_pk]
