"""Who is signed in: the session cookie, the one place that reads, sets and clears it.

The cookie carries the store's opaque subscriber id, signed and timed with the app secret;
nothing else about the subscriber leaves the server.
"""

from __future__ import annotations

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from numbind.carrier_app.records import Subscriber
from numbind.carrier_app.settings import AppSettings
from numbind.carrier_app.store import Store

__all__ = ["SESSION_COOKIE", "Sessions"]

SESSION_COOKIE = "nb_session"


class Sessions:
    def __init__(self, settings: AppSettings, store: Store) -> None:
        self._signer = URLSafeTimedSerializer(settings.secret, salt="numbind-carrier-session")
        self._max_age = settings.session_max_age_seconds
        self._secure = settings.secure_cookies
        self._store = store

    def subscriber(self, request: Request) -> Subscriber | None:
        """The signed-in subscriber, or None (no cookie, a bad or expired one, or gone)."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            sid = self._signer.loads(raw, max_age=self._max_age)
        except BadSignature:
            return None
        return self._store.subscriber(sid) if isinstance(sid, str) else None

    def start(self, response: Response, subscriber_id: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.dumps(subscriber_id),
            max_age=self._max_age,
            httponly=True,
            samesite="strict",
            secure=self._secure,
            path="/",
        )

    def end(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
