"""A principal's standing, re-checked for as long as it is being served. No grpc here.

Authentication happens at call start; a stream or a late write must not outlive the
standing it began under. Every change of standing (suspension, resumption, a reissued
certificate, a new attestation key) bumps the principal's `standing` version in the same
transaction as the change (storage.principals), so the version in the database is the one
truth shared by every registry process on that database.

- Open streams call `require` before each batch they send and at least every
  `check_seconds` while idle; a changed version ends the stream if the principal is
  suspended, gone or on another certificate now (a resumption leaves it served).
- Writes that act for a principal (acks) call `require_in` inside their own transaction,
  so a write committed after the change is impossible, whichever process made it.
- `changed(pks)` is the in-process hook: it drops the directory cache and wakes the
  principals' streams, which then re-check at once instead of at their next poll. Whatever
  learns of a change made elsewhere (PostgreSQL LISTEN/NOTIFY) calls the same hook.
"""

from __future__ import annotations

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
    if now is None:
        why = "no longer exists"
    elif now.suspended:
        why = "was suspended"
    elif principal.cert_sha256 is not None and now.cert_sha256 != principal.cert_sha256:
        why = "had its certificate replaced by a reissued bundle"
    else:
        # Resumed, or a carrier's attestation key replaced: in good standing on the same
        # certificate, nothing the call stands on changed. Such a call may also have been
        # authenticated from a directory cache a moment stale (another process's change
        # not heard of yet), after the change: it used to be ended as if the change came
        # after it began.
        return None
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

    @staticmethod
    def require_in(session: Session, principal: Principal) -> None:
        """`require` inside the caller's own transaction."""
        problem = refusal(principal, principals.standing(session, principal.pk))
        if problem is not None:
            raise problem

    def changed(self, pks: Iterable[int]) -> None:
        """A change of standing committed (here, or in another process sharing the store):
        forget cached principals and wake their streams to re-check now."""
        self._directory.invalidate()
        self._notifier.notify(pks)
