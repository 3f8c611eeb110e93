"""What every route shares, in one place: the app's state (settings, store, sessions,
templates, the registry client) and, per request, a `Page` that knows the language, the
signed-in subscriber, and how to render a template and call the registry.

Routes take `page: PageDep`; FastAPI builds one Page per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from numbind.carrier_app import store as st
from numbind.carrier_app.i18n import Translator
from numbind.carrier_app.sessions import CSRF_FIELD, Sessions, SessionStore
from numbind.carrier_app.settings import AppSettings, CodeSender
from numbind.carrier_app.throttle import TokenBucket, seconds_text
from numbind.carrier_app.wording import Words
from numbind.sdk import errors
from numbind.sdk.carrier import CarrierClient

__all__ = [
    "KNOWN_ERRORS",
    "AppState",
    "Page",
    "PageDep",
    "error_key",
    "page",
    "same_site_path",
    "state_of",
]

log = logging.getLogger("numbind.carrier_app")

HERE = Path(__file__).parent
T = TypeVar("T")

# The SDK's exceptions, mapped to what a subscriber reads. Most specific first.
_ERROR_KEYS: tuple[tuple[type[BaseException], str], ...] = (
    (errors.Unavailable, "err.unavailable"),
    (TimeoutError, "err.unavailable"),
    (ConnectionError, "err.unavailable"),
    (errors.QuotaExceeded, "err.busy"),
    (errors.PermissionDenied, "err.not_your_carrier"),
    (errors.Unauthenticated, "err.carrier_auth"),
    (errors.Refused, "err.refused"),
    (errors.Conflict, "err.conflict"),
    (errors.NotFound, "err.not_found"),
    (errors.InvalidRequest, "err.invalid"),
    (errors.ProofError, "err.proof"),
)
# The keys a redirect may carry in ?error= (anything else is ignored).
KNOWN_ERRORS = frozenset(key for _, key in _ERROR_KEYS) | {"err.server"}


def error_key(exc: BaseException) -> str:
    """The i18n key of the plain-words message for a failed registry call."""
    for cls, key in _ERROR_KEYS:
        if isinstance(exc, cls):
            return key
    return "err.server"


# An order reference (numbind.sdk.order_reference): kept on one line wherever it is shown.
_REFERENCE_RE = re.compile(r"\b[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}\b")


def _refs(text: str) -> Markup:
    """Escaped text with each order reference in a span that does not break."""
    return Markup(
        _REFERENCE_RE.sub(lambda m: f'<span class="ref">{m.group(0)}</span>', str(escape(text)))
    )


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["refs"] = _refs
    return templates


def same_site_path(path: str) -> str:
    """A path that stays on this site in any browser, for links back to the current page.

    The request's path is decoded and may be anything: ``//evil.example`` (a link to
    another host), ``/\\evil`` (browsers read ``\\`` as ``/``), a tab or newline (browsers
    drop them). Percent-encoding every character but a plain path's, and then leaving
    exactly one leading ``/``, leaves nothing a browser could read as a host.
    """
    return "/" + quote(path, safe="/-._~!$&'()*+,;=:@").lstrip("/")


@dataclass
class AppState:
    """One app's long-lived parts; kept on ``app.state.carrier_app``."""

    settings: AppSettings
    store: st.Store
    sessions: Sessions
    templates: Jinja2Templates
    # Per client address (throttle.py).
    check_limit: TokenBucket
    signin_limit: TokenBucket
    # The SMS gateway; None in demo mode.
    send_code: CodeSender | None
    # Demo mode only: the plain codes, so the banner can show them again after a typo.
    demo_codes: dict[str, str] = field(default_factory=dict)
    # Made in the app's lifespan: the grpc channel binds to the running loop.
    client: CarrierClient | None = None
    # The registry's order deadline as its last answer gave it, for pages that do not
    # query (the live progress): what the carrier promises a holder.
    order_deadline: timedelta | None = None

    @classmethod
    def create(cls, settings: AppSettings, send_code: CodeSender | None) -> AppState:
        store = st.Store(settings.db, settings.secret)
        server_side = SessionStore(
            settings.db,
            idle_seconds=settings.session_idle_seconds,
            max_age_seconds=settings.session_max_age_seconds,
        )
        return cls(
            settings=settings,
            store=store,
            sessions=Sessions(settings, store, server_side),
            templates=_templates(),
            check_limit=TokenBucket(settings.check_per_minute),
            signin_limit=TokenBucket(settings.signin_per_minute),
            send_code=send_code,
        )

    def attach(self, app: FastAPI) -> None:
        app.state.carrier_app = self


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.carrier_app
    return state


class Page:
    """One request as the routes see it."""

    def __init__(self, request: Request, state: AppState) -> None:
        self.request = request
        self.state = state
        self.settings = state.settings
        self.store = state.store
        self.t = Translator(getattr(request.state, "lang", "zh"))
        self.large_text: bool = getattr(request.state, "large_text", False)
        self._subscriber: st.Subscriber | None = None
        self._looked_up = False

    @property
    def subscriber(self) -> st.Subscriber | None:
        """The signed-in subscriber, or None."""
        if not self._looked_up:
            self._subscriber = self.state.sessions.subscriber(self.request)
            self._looked_up = True
        return self._subscriber

    @property
    def client(self) -> CarrierClient:
        assert self.state.client is not None, "the app's lifespan makes the client"
        return self.state.client

    async def registry(self, call: Awaitable[T]) -> T:
        """Await a registry call, bounded: a person is waiting."""
        try:
            return await asyncio.wait_for(call, self.settings.registry_timeout_seconds)
        except TimeoutError:
            raise errors.Unavailable("registry did not answer in time") from None

    @property
    def words(self) -> Words:
        """The page's sentences in its language, for this carrier."""
        return Words(self.t, self.settings.carrier(self.t.lang), self.settings.support_phone)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        other = "en" if self.t.lang == "zh" else "zh"
        path = same_site_path(self.request.url.path)
        context.update(
            t=self.t,
            demo=self.settings.demo,
            carrier=self.settings.carrier(self.t.lang),
            signed_in=self.subscriber is not None,
            path=path,
            switch_url=f"{path}?lang={other}",
            large_text=self.large_text,
            text_url=f"{path}?text={'normal' if self.large_text else 'large'}",
            csrf_field=CSRF_FIELD,
            csrf=self.state.sessions.csrf_token(self.request),
        )
        return self.state.templates.TemplateResponse(
            self.request, name, context, status_code=status
        )

    def failed(self, what: str, exc: BaseException) -> str:
        """Log a failed registry call; return the i18n key of what to tell the subscriber."""
        key = error_key(exc)
        if key == "err.server":
            log.error("%s failed", what, exc_info=exc)
        else:
            # SDK messages come from the registry, which never sees a number.
            log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        return key

    def wait_text(self, until: float, key: str = "err.wait") -> str:
        """Try again in N seconds (a back-off or a throttle; never long)."""
        return self.t(key, seconds=seconds_text(until - time.time()))


def page(request: Request) -> Page:
    return Page(request, state_of(request))


PageDep = Annotated[Page, Depends(page)]
