"""Who is signed in, and the form tokens: the one place that reads, sets and clears the
session cookie.

Every browser gets a session id: 32 random bytes in the cookie and nothing else (no
subscriber id, no signature to replay). A signed-in session is a row on the server keyed
by the id's SHA-256 (a copy of the database yields no live cookie); it ends when the
subscriber signs out (the row is deleted, so a copied cookie stops working at once),
after ``session_idle_seconds`` without a request, and ``session_max_age_seconds`` after
sign-in. A browser that has not signed in has an id with no row: it still carries the form
token, so the sign-in form itself is protected. Sign-in always starts a new id: an id
planted before sign-in never becomes a signed-in one.

Form token (CSRF): HMAC(app secret, session id), one per session, sent in every POST form
as ``csrf``. A cross-site page can neither read it nor compute it, whatever headers it
manages to send; it changes with the session (at sign-in and sign-out).

Cookie: ``HttpOnly``; ``Secure`` (and the ``__Host-`` name prefix, which pins it to this
host and path ``/``) unless the app is a plain-HTTP demo on loopback; ``SameSite=Strict``:
every link into the app lands on a page that needs no session to render its first screen
(sign-in, or /me which sends a signed-out browser to sign-in), so Strict costs a subscriber
arriving from an SMS link one sign-in at most, and it keeps the cookie off every
cross-site request, GET included (Lax would send it on top-level cross-site GETs).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import Request, Response
from numbind.carrier_app.records import Subscriber
from numbind.carrier_app.settings import AppSettings
from numbind.carrier_app.sqlite_db import reading, transaction
from numbind.carrier_app.store import Store

__all__ = ["CSRF_FIELD", "SessionStore", "Sessions", "cookie_name"]

CSRF_FIELD = "csrf"
_SID_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
# last_seen is written at most this often per session (not on every request).
_TOUCH_SECONDS = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash       BLOB PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers(id),
    created_at    REAL NOT NULL,
    last_seen     REAL NOT NULL
);
"""


def cookie_name(secure: bool) -> str:
    return "__Host-nb_session" if secure else "nb_session"


def _hash(sid: str) -> bytes:
    return hashlib.sha256(sid.encode()).digest()


class SessionStore:
    """Signed-in sessions, on the server (the app's SQLite file, beside the subscribers)."""

    def __init__(
        self,
        path: Path,
        *,
        idle_seconds: int,
        max_age_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._idle = idle_seconds
        self._max_age = max_age_seconds
        self._now = clock
        with reading(path) as db:
            db.executescript(_SCHEMA)

    def create(self, subscriber_id: str) -> str:
        """A new session for this subscriber; returns its id (for the cookie only)."""
        sid = secrets.token_urlsafe(32)
        now = self._now()
        with transaction(self.path) as db:
            db.execute(
                "DELETE FROM sessions WHERE last_seen <= ? OR created_at <= ?",
                (now - self._idle, now - self._max_age),
            )
            db.execute(
                "INSERT INTO sessions (id_hash, subscriber_id, created_at, last_seen)"
                " VALUES (?, ?, ?, ?)",
                (_hash(sid), subscriber_id, now, now),
            )
        return sid

    def subscriber_id(self, sid: str) -> str | None:
        """The subscriber of a live session, or None (unknown, ended, idle or too old)."""
        now = self._now()
        key = _hash(sid)
        with reading(self.path) as db:
            row = db.execute(
                "SELECT subscriber_id, created_at, last_seen FROM sessions WHERE id_hash = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        subscriber_id, created_at, last_seen = str(row[0]), float(row[1]), float(row[2])
        if now - last_seen >= self._idle or now - created_at >= self._max_age:
            self.end(sid)
            return None
        if now - last_seen >= _TOUCH_SECONDS:
            with transaction(self.path) as db:
                db.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, key))
        return subscriber_id

    def end(self, sid: str) -> None:
        with transaction(self.path) as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(sid),))


class Sessions:
    """The session cookie and form token of each request.

    The middleware calls ``begin`` first on every request (it picks the id up from the
    cookie, or makes a new one) and ``finish`` last (it sets the cookie of a new id).
    """

    def __init__(self, settings: AppSettings, store: Store, sessions: SessionStore) -> None:
        self._secret = settings.secret
        self.secure = not settings.plain_http_demo
        self.cookie = cookie_name(self.secure)
        self._store = store
        self._sessions = sessions

    # -- per request ----------------------------------------------------------------------
    def begin(self, request: Request) -> None:
        raw = request.cookies.get(self.cookie, "")
        fresh = not _SID_RE.fullmatch(raw)
        request.state.sid = secrets.token_urlsafe(32) if fresh else raw
        request.state.sid_is_new = fresh

    def finish(self, request: Request, response: Response) -> None:
        if getattr(request.state, "sid_is_new", False):
            self._set_cookie(response, request.state.sid)

    def sid(self, request: Request) -> str:
        return str(getattr(request.state, "sid", ""))

    def subscriber(self, request: Request) -> Subscriber | None:
        """The signed-in subscriber, or None."""
        sid = self.sid(request)
        if not sid or getattr(request.state, "sid_is_new", True):
            return None
        subscriber_id = self._sessions.subscriber_id(sid)
        return None if subscriber_id is None else self._store.subscriber(subscriber_id)

    # -- form tokens ----------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        sid = self.sid(request)
        if not sid:
            return ""
        return hmac.new(self._secret, b"csrf\x00" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, token: str) -> bool:
        """Whether a POST's token belongs to the session it came with. A browser without a
        session cookie has none that can match."""
        if getattr(request.state, "sid_is_new", True):
            return False
        return hmac.compare_digest(self.csrf_token(request), token)

    # -- sign-in and sign-out -------------------------------------------------------------
    def start(self, request: Request, response: Response, subscriber_id: str) -> None:
        """Sign in: a new session id, whatever the browser had before."""
        sid = self._sessions.create(subscriber_id)
        request.state.sid, request.state.sid_is_new = sid, False
        self._set_cookie(response, sid)

    def end(self, request: Request, response: Response) -> None:
        """Sign out: the server forgets the session; the browser gets a new, anonymous id."""
        sid = self.sid(request)
        if sid:
            self._sessions.end(sid)
        request.state.sid, request.state.sid_is_new = secrets.token_urlsafe(32), False
        self._set_cookie(response, request.state.sid)

    def _set_cookie(self, response: Response, sid: str) -> None:
        response.set_cookie(
            self.cookie,
            sid,
            # A browser-session cookie: the server decides when a session ends.
            max_age=None,
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )
