"""Who is calling: principals by certificate identity, cached briefly.

The cache keeps the auth interceptor off the database on the hot path; suspensions made
through this process take effect at once (invalidate), others within `ttl` seconds.
"""

from __future__ import annotations

import time

from numbind.registry.domain.types import Principal
from numbind.registry.storage import principals
from numbind.registry.storage.db import Database


class Directory:
    def __init__(self, db: Database, ttl: float = 1.0) -> None:
        self._db = db
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Principal | None]] = {}

    async def lookup(self, role: str, name: str) -> Principal | None:
        key = (role, name)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self._db.run(lambda s: principals.get_active(s, role, name), write=False)
        self._cache[key] = (now + self._ttl, found)
        return found

    def invalidate(self) -> None:
        self._cache.clear()
