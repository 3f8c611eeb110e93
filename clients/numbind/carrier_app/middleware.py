"""What wraps every request: the language and text size (each remembered in a cookie), the
same-origin check on POST, the security headers, and the error pages (never a traceback,
never a number)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from numbind.carrier_app.deps import page
from numbind.carrier_app.i18n import pick_lang
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["LANG_COOKIE", "TEXT_COOKIE", "install"]

log = logging.getLogger("numbind.carrier_app")

LANG_COOKIE = "nb_lang"
# 适老化: larger text, remembered like the language.
TEXT_COOKIE = "nb_text"
_TEXT_SIZES = ("large", "normal")
_CSP = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


async def language_and_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    asked = request.query_params.get("lang")
    request.state.lang = pick_lang(asked, request.cookies.get(LANG_COOKIE))
    size = request.query_params.get("text")
    request.state.large_text = (
        size if size in _TEXT_SIZES else request.cookies.get(TEXT_COOKIE)
    ) == "large"
    if request.method == "POST":
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin and origin not in (f"http://{host}", f"https://{host}"):
            p = page(request)
            return p.render("error.html", 403, message=p.t("err.forbidden"))
    response = await call_next(request)
    if asked in ("zh", "en"):
        response.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, samesite="lax", httponly=True)
    if size in _TEXT_SIZES:
        response.set_cookie(TEXT_COOKIE, size, max_age=365 * 86400, samesite="lax", httponly=True)
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


async def unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    p = page(request)
    return p.render("error.html", 500, message=p.t("err.server"))


def install(app: FastAPI) -> None:
    app.middleware("http")(language_and_headers)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
