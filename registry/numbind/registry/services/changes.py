"""What this process hears about changes made by any process sharing its store.

Three things must agree across registry processes and are cached or waited on here:
feed wake-ups (FeedNotifier), the principal cache (Directory) and the key map
(TokenMapper, and the re-key runner that waits for a job). A change made in this process
is applied at once after its commit (the callers do that); a change committed by another
process arrives through PostgreSQL LISTEN/NOTIFY (storage.signals), normally within
milliseconds. Two fallbacks bound the worst case when a notification is missed:

- the listener reports each (re)connection, and everything is then treated as changed;
- every `poll_seconds` one query reads the feed heads of the platforms with a stream
  waiting here and wakes those whose head is past what such a stream has read (a stream
  that began waiting just after an append it did not hear of included: a head compared
  with the previous poll's missed those); the principal cache expires on its own after
  the same time (Directory's ttl), and the key map is checked in every transaction.

On SQLite (one process only, see storage.lock) nothing runs here: writers notify in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial

from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.services.standing import StandingService
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import signals
from numbind.registry.storage.db import Database

log = logging.getLogger(__name__)


class Changes:
    def __init__(
        self,
        db: Database,
        notifier: FeedNotifier,
        standing: StandingService,
        token_map: TokenMapper,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._standing = standing
        self._token_map = token_map
        self._poll = poll_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: signals.Listener | None = None
        # Told when the key map or the keys changed elsewhere: the re-key runner (to take
        # up a new job) and the token service's key ring (to reload before its next use).
        self.on_keys: list[Callable[[], None]] = []
        # Counters for /metrics and tests: notifications heard, polls that found a change.
        self.heard = 0
        self.poll_wakes = 0

    @property
    def shared(self) -> bool:
        """True when other processes may write the same store (PostgreSQL)."""
        return not self._db.is_sqlite

    @property
    def watched(self) -> dict[int, int]:
        """The platforms with a stream waiting here, each with the least feed sequence such
        a stream has read through: whose heads the next poll reads."""
        return self._notifier.watched()

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.connected.is_set()

    def start(self) -> None:
        if not self.shared or self._tasks:
            return
        self._tasks = [asyncio.create_task(self._poll_loop(), name="numbind-poll")]
        if self._db.notify:
            listener = signals.Listener(self._db.url, self._heard, self._everything_changed)
            self._listener = listener
            self._tasks.append(asyncio.create_task(listener.run(), name="numbind-listen"))

    async def wait_listening(self, seconds: float) -> bool:
        """True once the listener is connected (tests and start-up use it)."""
        if self._listener is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener.connected.wait(), seconds)
        return self.listening

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- what changed -------------------------------------------------------------------
    def _heard(self, payload: str) -> None:
        self.heard += 1
        kind, ids = signals.parse(payload)
        if kind == signals.FEED:
            self._notifier.notify(ids)
        elif kind == signals.PRINCIPALS:
            # Drops the principal cache and wakes those principals' open streams, which
            # re-read their standing and end if it changed.
            self._standing.changed(ids)
        elif kind == signals.KEYS:
            self._token_map.invalidate()
            for hook in self.on_keys:
                hook()
        else:
            log.warning("change listener: unknown payload %r ignored", payload[:40])

    def _everything_changed(self) -> None:
        self._standing.changed(())
        self._token_map.invalidate()
        self._notifier.notify_all()
        for hook in self.on_keys:
            hook()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: streams find out themselves
                log.debug("feed poll failed: %s", exc)

    async def _poll_once(self) -> None:
        watched = self._notifier.watched()
        if not watched:
            return
        heads = await self._db.run(partial(signals.feed_heads, platform_pks=watched), write=False)
        moved = [pk for pk, head in heads.items() if head > watched[pk]]
        if moved:
            self.poll_wakes += 1
            self._notifier.notify(moved)
