"""Every token a request carries is mapped to the store key before any lookup.

`TokenMapper` keeps this process's copy of the key map (registry.domain.keymap.KeyView)
and runs a request's unit of work against it: the tokens are validated and mapped first
(off the event loop: mapping an older key's token is a scalar multiplication), then the
transaction checks that the key map's epoch has not moved meanwhile, and if it has, the
whole request starts over with the new map. Several registry processes sharing a store
thus never act on a stale map: a rotation in one is seen by the next request in each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from numbind.registry.domain.keymap import KeyView, RekeyStatus
from numbind.registry.errors import Unavailable
from numbind.registry.storage import keymap
from numbind.registry.storage.db import Database, Session

log = logging.getLogger(__name__)

P = TypeVar("P")
T = TypeVar("T")

# A request starts over at most this often when the key map keeps moving under it (each
# rotation, end of re-key and retirement moves it once).
_ATTEMPTS = 5


class TokenMapper:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._view: KeyView | None = None

    async def view(self) -> KeyView:
        """The key map as last read; read from the store on first use or after a change."""
        if self._view is None:
            self._view = await self._db.run(keymap.load_view, write=False)
        return self._view

    def invalidate(self) -> None:
        """Forget the cached map (this process changed it, or found it stale)."""
        self._view = None

    async def latest_rekey(self) -> RekeyStatus | None:
        return await self._db.run(keymap.latest_rekey, write=False)

    async def run(
        self,
        prepare: Callable[[KeyView], P],
        act: Callable[[Session, KeyView, P], T],
        *,
        write: bool = True,
    ) -> T:
        """`prepare(view)` in a worker thread (validation and mapping; raise to refuse the
        request), then `act(session, view, prepared)` in one transaction that first checks
        the view is still current. Both run again, from scratch, if it is not."""
        return await self._attempts(prepare, act, write)

    async def act(
        self,
        fn: Callable[[Session, KeyView], T],
        *,
        write: bool = True,
        executor: ThreadPoolExecutor | None = None,
    ) -> T:
        """`run` for units of work that map their few tokens inside the transaction
        (`executor`: see Database.run)."""
        return await self._attempts(None, lambda s, view, _: fn(s, view), write, executor)

    async def _attempts(
        self,
        prepare: Callable[[KeyView], Any] | None,
        act: Callable[[Session, KeyView, Any], T],
        write: bool,
        executor: ThreadPoolExecutor | None = None,
    ) -> T:
        for _ in range(_ATTEMPTS):
            view = await self.view()
            prepared = None if prepare is None else await asyncio.to_thread(prepare, view)

            def tx(session: Session, view: KeyView = view, prepared: Any = prepared) -> T:
                keymap.check_epoch(session, view.epoch, share=write)
                return act(session, view, prepared)

            try:
                return await self._db.run(tx, write=write, executor=executor)
            except keymap.KeyMapChanged as exc:
                log.info("token key map changed during a request (%s); mapping again", exc)
                self.invalidate()
        raise Unavailable("token keys changed repeatedly during this request; retry it")
