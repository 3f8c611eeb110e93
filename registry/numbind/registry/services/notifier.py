"""Wakes a platform's open event streams when its feed grows.

Each platform has a generation number that notify() bumps. A stream reads the generation
*before* it reads the feed and waits only while it is unchanged, so an append that commits
between the stream's read and its wait is never missed (no lost wake-up).

In-process only: writers call notify() after their transaction commits. Streams also poll
at the heartbeat interval, so with several registry instances behind a load balancer an
event appended by another instance is delivered within one interval (PostgreSQL
LISTEN/NOTIFY would close that gap; see README, "Scaling out").
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

# The lifecycle log's channel: followers of the hub's log wait on it (platforms' channels
# are their principal pks, from 1).
LOG_CHANNEL = 0


class FeedNotifier:
    def __init__(self) -> None:
        self._generation: dict[int, int] = defaultdict(int)
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)

    def generation(self, platform_pk: int) -> int:
        return self._generation[platform_pk]

    def notify(self, platform_pks: Iterable[int]) -> None:
        for pk in platform_pks:
            self._generation[pk] += 1
            for event in self._waiters.get(pk, ()):
                event.set()

    async def wait(self, platform_pk: int, seen: int, seconds: float) -> bool:
        """True once the generation differs from `seen` (at once if it already does),
        False on timeout."""
        if self._generation[platform_pk] != seen:
            return True
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
