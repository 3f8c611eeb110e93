"""What wraps every request: the session id (sessions.py), the language and text size (each
remembered in a cookie), the two checks on every POST (the form token, then the Origin or
Referer as a second layer), the security headers, and the error pages (never a traceback,
never a number)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response
from numbind.carrier_app.deps import page, state_of
from numbind.carrier_app.i18n import pick_lang
from numbind.carrier_app.sessions import CSRF_FIELD
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["LANG_COOKIE", "TEXT_COOKIE", "FormRefused", "csrf_guard", "install"]

log = logging.getLogger("numbind.carrier_app")

LANG_COOKIE = "nb_lang"
# 适老化: larger text, remembered like the language.
TEXT_COOKIE = "nb_text"
_TEXT_SIZES = ("large", "normal")
_LANGS = ("zh", "en")
_CSP = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


class FormRefused(Exception):
    """A POST without this session's form token: refused before any route runs."""


async def csrf_guard(request: Request) -> None:
    """Every POST carries the session's form token, whatever its headers say (an app-wide
    dependency, so a new form cannot forget it)."""
    if request.method != "POST":
        return
    form = await request.form()  # cached: the route's Form() fields read the same
    token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not state_of(request).sessions.csrf_ok(request, token):
        raise FormRefused


def _loopback(request: Request) -> bool:
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    """The Origin header, or failing it the Referer, names this host (or neither is sent:
    the form token is the check that does not depend on headers)."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin:
        return origin in (f"http://{host}", f"https://{host}")
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return parts.scheme in ("http", "https") and parts.netloc == host
    return True


async def language_and_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    state = state_of(request)
    if state.settings.plain_http_demo and not _loopback(request):
        # A plain-HTTP demo sends cookies without Secure: never to another machine.
        return Response("plain-HTTP demo: loopback clients only\n", 403)
    state.sessions.begin(request)
    asked = request.query_params.get("lang")
    request.state.lang = pick_lang(asked, request.cookies.get(LANG_COOKIE))
    size = request.query_params.get("text")
    request.state.large_text = (
        size if size in _TEXT_SIZES else request.cookies.get(TEXT_COOKIE)
    ) == "large"
    response: Response
    if request.method == "POST" and not _same_origin(request):
        p = page(request)
        response = p.render("error.html", 403, message=p.t("err.forbidden"))
    else:
        response = await call_next(request)
    state.sessions.finish(request, response)
    # Preferences, not secrets; Secure like every cookie of the app.
    for name, value in ((LANG_COOKIE, asked), (TEXT_COOKIE, size)):
        if value in (_LANGS if name == LANG_COOKIE else _TEXT_SIZES):
            response.set_cookie(
                name,
                str(value),
                max_age=365 * 86400,
                samesite="lax",
                httponly=True,
                secure=state.sessions.secure,
            )
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    p = page(request)
    message = p.t("err.page_missing") if exc.status_code == 404 else p.t("err.invalid")
    return p.render("error.html", exc.status_code, message=message)


async def form_refused(request: Request, exc: Exception) -> Response:
    p = page(request)
    log.info("form without a valid token refused on %s", request.url.path)
    return p.render("error.html", 403, message=p.t("err.csrf"))


async def unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    p = page(request)
    return p.render("error.html", 500, message=p.t("err.server"))


def install(app: FastAPI) -> None:
    app.middleware("http")(language_and_headers)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(FormRefused, form_refused)
    app.add_exception_handler(Exception, unexpected)
