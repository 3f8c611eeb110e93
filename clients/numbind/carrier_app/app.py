"""The reference carrier app: the web pages a carrier gives its subscribers for 一证通查 and
一键解绑, plus the carrier's reassigned-number lookup for callers.

Server-rendered pages (FastAPI + Jinja2) with a little plain JavaScript for the confirmation
dialog and the live progress list. The app keeps its own subscriber store (store.py) and
talks to the registry only through the carrier SDK, which tokenises every number first: no
number ever leaves the carrier.

Routes, one router per area:
    signin.py      GET  /                       sign-in (or on to /me when signed in)
                   POST /signin                 number + ID last six -> one-time code
                   POST /signin/code            code -> session cookie
                   POST /signout
    my_numbers.py  GET  /me                     一证通查: every number under the ID, by app
                   GET  /me/confirm             the confirmation step without JavaScript
                   POST /me/revoke              一键解绑 (scope=previous), the overdue apps
                                                again (=retry), one app of one's own (=platform)
                   GET  /api/numbers/{id}       a number's live progress, polled by app.js
    proofs.py      GET  /me/proof/{rid}/{app}   an app's revocation proven in the registry's
                                                log (verified, downloaded as JSON)
    check.py       GET  /check, POST /check     reassigned-since lookup for callers

What the routes share (settings, store, session, registry client, translator, rendering)
is in deps.py; the language, text size, headers and error pages in middleware.py; what the
"my numbers" page shows in views.py (the cards) and wording.py (their sentences), every
string in texts.py and texts_numbers.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from numbind.carrier_app import check, middleware, my_numbers, proofs, signin
from numbind.carrier_app.deps import HERE, AppState, error_key
from numbind.carrier_app.settings import AppSettings, CodeSender, load_secret
from numbind.protocol.bundle import Bundle
from numbind.sdk.carrier import CarrierClient
from numbind.sdk.retry import RetryPolicy

__all__ = [
    "AppSettings",
    "CodeSender",
    "create_app",
    "error_key",
    "load_secret",
]


def _client(settings: AppSettings) -> CarrierClient:
    # Few, short retries: a person is waiting; AppSettings.registry_timeout_seconds bounds
    # the rest.
    return CarrierClient(
        Bundle.load(settings.carrier_bundle),
        region=settings.region,
        retry=RetryPolicy(attempts=3, base=0.1, cap=1.0),
    )


def create_app(
    settings: AppSettings,
    *,
    send_code: CodeSender | None = None,
    client_factory: Callable[[AppSettings], CarrierClient] | None = None,
) -> FastAPI:
    """The carrier app. Outside demo mode a ``send_code`` (SMS gateway) is required."""
    if not settings.demo and send_code is None:
        raise ValueError("send_code: needed outside demo mode (the app has no SMS gateway)")
    state = AppState.create(settings, send_code)
    factory = client_factory or _client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The grpc channel binds to the running loop, so it is made here, not earlier.
        state.client = factory(settings)
        try:
            yield
        finally:
            await state.client.close()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(middleware.csrf_guard)],
    )
    state.attach(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    middleware.install(app)
    for area in (signin, my_numbers, proofs, check):
        app.include_router(area.router)
    return app
