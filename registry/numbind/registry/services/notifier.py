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
        # Each waiter, with the feed sequence its stream has read through (None: a waiter
        # that reads no feed, such as a follower of the lifecycle log).
        self._waiters: dict[int, dict[asyncio.Event, int | None]] = defaultdict(dict)

    def generation(self, platform_pk: int) -> int:
        return self._generation[platform_pk]

    def notify(self, platform_pks: Iterable[int]) -> None:
        for pk in platform_pks:
            self._generation[pk] += 1
            for event in self._waiters.get(pk, ()):
                event.set()

    def watched(self) -> dict[int, int]:
        """Platforms with a stream waiting in this process now, each with the least feed
        sequence those streams have read through: a feed head past it is news to one."""
        out: dict[int, int] = {}
        for pk, waiters in self._waiters.items():
            read = [seq for seq in waiters.values() if seq is not None]
            if read:
                out[pk] = min(read)
        return out

    def notify_all(self) -> None:
        """Wake every stream: after a gap in what this process heard (a lost listener)."""
        self.notify(list(self._generation.keys() | self._waiters.keys()))

    async def wait(
        self, platform_pk: int, seen: int, seconds: float, read_through: int | None = None
    ) -> bool:
        """True once the generation differs from `seen` (at once if it already does),
        False on timeout. `read_through`: the feed sequence the waiting stream has read
        through, for the poll of other processes' appends (services.changes)."""
        if self._generation[platform_pk] != seen:
            return True
        event = asyncio.Event()
        self._waiters[platform_pk][event] = read_through
        try:
            await asyncio.wait_for(event.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters[platform_pk].pop(event, None)
            if not self._waiters[platform_pk]:
                del self._waiters[platform_pk]
