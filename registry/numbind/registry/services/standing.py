"""A principal's standing, re-checked for as long as it is being served. No grpc here.

Authentication happens at call start; a stream or a late write must not outlive the
standing it began under. Every change of standing (suspension, resumption, a reissued
certificate, a new attestation key) bumps the principal's `standing` version in the same
transaction as the change (storage.principals), so the version in the database is the one
truth shared by every registry process on that database.

- A stream takes its baseline from the database as it starts (`fresh`): the principal
  it authenticated as may come from a directory cache up to a second stale, and a change
  made just before the call (a suspension lifted by another process) is not one made
  after it began. It then calls `require` before each batch it sends and at least every
  `check_seconds` while idle; any change of version since its start ends it (a
  suspension lifted a moment later included).
- Writes that act for a principal (acks) call `require_in` inside their own transaction:
  refused if the principal is suspended, gone or on another certificate at that moment,
  whichever process made the change; a write is a moment, so a version changed by a
  resumption or a new attestation key does not refuse it.
- `changed(pks)` is the in-process hook: it drops the directory cache and wakes the
  principals' streams, which then re-check at once instead of at their next poll. Whatever
  learns of a change made elsewhere (PostgreSQL LISTEN/NOTIFY) calls the same hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from numbind.registry.domain.types import Principal
from numbind.registry.errors import Unauthenticated
from numbind.registry.services.directory import Directory
from numbind.registry.services.notifier import FeedNotifier
from numbind.registry.storage import principals
from numbind.registry.storage.db import Database, Session

# A change of standing reaches open streams within this many seconds at worst.
CHECK_SECONDS = 1.0


def refusal(principal: Principal, now: principals.Standing | None) -> Unauthenticated | None:
    """Why `principal`, authenticated under its standing then, may no longer be served
    with standing `now`; None while it may."""
    if now is not None and now.version == principal.standing:
        return None
    return refusal_now(principal, now) or _ended(
        principal, "changed standing (resumed, or a new certificate or attestation key)"
    )


def refusal_now(principal: Principal, now: principals.Standing | None) -> Unauthenticated | None:
    """Why `principal` may not act at this moment, with standing `now`: gone, suspended, or
    on another certificate than the one it authenticated with (a principal pinned to none
    then, as before migration 0003, has been re-pinned by a reissue since); None while it
    may, whatever else bumped its version."""
    if now is None:
        return _ended(principal, "no longer exists")
    if now.suspended:
        return _ended(principal, "was suspended")
    if now.cert_sha256 is not None and now.cert_sha256 != principal.cert_sha256:
        return _ended(principal, "had its certificate replaced by a reissued bundle")
    return None


def _ended(principal: Principal, why: str) -> Unauthenticated:
    return Unauthenticated(
        f"principal {principal.uri} {why} after this call began; the call is ended and "
        "nothing more is served or recorded on it; reconnect with valid credentials"
    )


class StandingService:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        notifier: FeedNotifier,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._db = db
        self._directory = directory
        self._notifier = notifier
        self.check_seconds = check_seconds

    async def require(self, principal: Principal) -> None:
        """Raise Unauthenticated if `principal`'s standing changed since it authenticated."""
        now = await self._db.run(lambda s: principals.standing(s, principal.pk), write=False)
        problem = refusal(principal, now)
        if problem is not None:
            raise problem

    async def fresh(self, principal: Principal) -> Principal:
        """`principal` with its standing as the database has it now, for a stream to hold
        to from its start; Unauthenticated if it may not act now (`refusal_now`)."""
        now = await self._db.run(lambda s: principals.standing(s, principal.pk), write=False)
        problem = refusal_now(principal, now)
        if problem is not None:
            raise problem
        assert now is not None
        return dataclasses.replace(principal, standing=now.version)

    @staticmethod
    def require_in(session: Session, principal: Principal) -> None:
        """`refusal_now`, inside the caller's own write transaction."""
        problem = refusal_now(principal, principals.standing(session, principal.pk))
        if problem is not None:
            raise problem

    def changed(self, pks: Iterable[int]) -> None:
        """A change of standing committed (here, or in another process sharing the store):
        forget cached principals and wake their streams to re-check now."""
        self._directory.invalidate()
        self._notifier.notify(pks)
