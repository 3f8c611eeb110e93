"""Wakes a platform's open event streams when its feed grows.

Each platform has a generation number that notify() bumps. A stream reads the generation
*before* it reads the feed and waits only while it is unchanged, so an append that commits
between the stream's read and its wait is never missed (no lost wake-up).

Writers in this process call notify() after their transaction commits; appends committed
by other processes on the same PostgreSQL store reach it through services.changes
(LISTEN/NOTIFY, with a once-a-second poll of the watched feeds' heads as the bound).
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

    def watched(self) -> set[int]:
        """Platforms with a stream waiting in this process now."""
        return set(self._waiters)

    def notify_all(self) -> None:
        """Wake every stream: after a gap in what this process heard (a lost listener)."""
        self.notify(list(self._generation.keys() | self._waiters.keys()))

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
