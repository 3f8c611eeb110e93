"""The reference carrier app: the web pages a carrier gives its subscribers for 一证通查 and
一键解绑, plus the carrier's reassigned-number lookup for callers.

Server-rendered pages (FastAPI + Jinja2) with a little plain JavaScript for the confirmation
dialog and the live progress list. The app keeps its own subscriber store (store.py) and
talks to the registry only through the carrier SDK, which tokenises every number first: no
number ever leaves the carrier.

Routes:
    GET  /                       sign-in (or on to /me when signed in)
    POST /signin                 number + ID last six -> one-time code
    POST /signin/code            code -> session cookie
    POST /signout
    GET  /me                     一证通查: every number under the ID, bindings grouped
    GET  /me/confirm             the confirmation step without JavaScript
    POST /me/revoke              一键解绑 (scope=previous) or one app (scope=platform)
    GET  /api/revocations/{id}   progress as JSON, polled by static/app.js
    GET  /check, POST /check     reassigned-since lookup for callers
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from numbind.carrier_app import store as st
from numbind.carrier_app.i18n import CST, Translator, pick_lang
from numbind.protocol.bundle import Bundle
from numbind.sdk import CarrierClient, NumberView, PlatformView, Scope, errors
from numbind.sdk import RevocationProgress as Progress
from numbind.sdk.phone import InvalidNumber, to_e164
from numbind.sdk.retry import RetryPolicy
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "AppSettings",
    "CodeSender",
    "create_app",
    "error_key",
    "load_secret",
]

log = logging.getLogger("numbind.carrier_app")

HERE = Path(__file__).parent
SESSION_COOKIE = "nb_session"
LANG_COOKIE = "nb_lang"
FINAL_STATES = frozenset({"DONE", "REJECTED"})
SETTLED_STATES = frozenset({"DONE", "REJECTED", "OVERDUE"})
PROGRESS_PER_NUMBER = 3
_PLATFORM_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_REQUEST_ID_RE = re.compile(r"[0-9a-f]{32}")
_REVOCATION_ID_RE = re.compile(r"[0-9a-f-]{36}")
_CODE_RE = re.compile(r"\d{6}")

T = TypeVar("T")
# Sends a sign-in code to a number (an SMS gateway); not needed in demo mode.
CodeSender = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class AppSettings:
    carrier_bundle: Path
    db: Path
    secret: bytes = field(repr=False)
    demo: bool = False
    carrier_name: str = "示例移动"
    # Set when served over HTTPS (behind a TLS-terminating proxy in production).
    secure_cookies: bool = False
    registry_timeout_seconds: float = 8.0
    session_max_age_seconds: int = 30 * 60
    check_per_minute: int = 30

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("secret: want at least 16 bytes")
        if self.registry_timeout_seconds <= 0:
            raise ValueError(
                f"registry_timeout_seconds: got {self.registry_timeout_seconds}, want > 0"
            )
        if self.session_max_age_seconds < 60:
            raise ValueError(
                f"session_max_age_seconds: got {self.session_max_age_seconds}, want >= 60"
            )


def load_secret(path: Path) -> bytes:
    """The app secret (HMAC/scrypt pepper, cookie signing) from a file, created if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


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


def error_key(exc: BaseException) -> str:
    """The i18n key of the plain-words message for a failed registry call."""
    for cls, key in _ERROR_KEYS:
        if isinstance(exc, cls):
            return key
    return "err.server"


@dataclass(frozen=True)
class PlatformRow:
    platform_id: str
    name: str
    category: str
    count: int
    earliest: datetime | None
    latest: datetime | None
    open_state: str
    # The app refused the last unbinding this subscriber asked for.
    refused: bool = False


@dataclass(frozen=True)
class NumberCard:
    id: int
    masked: str
    tenure_start: datetime
    previous: list[PlatformRow]
    mine: list[PlatformRow]
    loaded: bool

    @property
    def revocable_previous(self) -> list[PlatformRow]:
        return [p for p in self.previous if not p.open_state]


@dataclass(frozen=True)
class ProgressBlock:
    id: str
    number_id: int
    scope: str
    requested: datetime
    platforms: list[Progress] | None

    @property
    def settled(self) -> bool:
        return self.platforms is not None and all(p.state in SETTLED_STATES for p in self.platforms)

    @property
    def final(self) -> bool:
        return self.platforms is not None and all(p.state in FINAL_STATES for p in self.platforms)

    @property
    def states(self) -> list[str]:
        return [p.state for p in self.platforms or []]


def _rows(platforms: list[PlatformView], pre: bool, rejected: set[str]) -> list[PlatformRow]:
    return [
        PlatformRow(
            p.platform_id,
            p.display_name,
            p.category,
            p.active_count,
            p.earliest,
            p.latest,
            p.open_state,
            p.platform_id in rejected and not p.open_state,
        )
        for p in platforms
        if p.pre_tenure == pre
    ]


class _RateLimit:
    """At most ``per_minute`` calls per client address in any 60 s (in memory)."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        q = self._seen.setdefault(who, deque())
        while q and q[0] <= now - 60:
            q.popleft()
        if len(q) >= self._per_minute:
            return False
        q.append(now)
        if len(self._seen) > 10_000:
            # Keep only clients seen in the last minute; older queues are spent.
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - 60}
        return True


def create_app(
    settings: AppSettings,
    *,
    send_code: CodeSender | None = None,
    client_factory: Callable[[AppSettings], CarrierClient] | None = None,
) -> FastAPI:
    """The carrier app. Outside demo mode a ``send_code`` (SMS gateway) is required."""
    if not settings.demo and send_code is None:
        raise ValueError("send_code: needed outside demo mode (the app has no SMS gateway)")
    store = st.Store(settings.db, settings.secret)
    signer = URLSafeTimedSerializer(settings.secret, salt="numbind-carrier-session")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    check_limit = _RateLimit(settings.check_per_minute)
    # Demo mode only: the plain codes, so the banner can show them again after a typo.
    demo_codes: dict[str, str] = {}

    def make_client(s: AppSettings) -> CarrierClient:
        # Few, short retries: a person is waiting; the timeout below bounds the rest.
        return CarrierClient(
            Bundle.load(s.carrier_bundle), retry=RetryPolicy(attempts=3, base=0.1, cap=1.0)
        )

    factory = client_factory or make_client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The grpc channel binds to the running loop, so it is made here, not earlier.
        client = factory(settings)
        app.state.client = client
        try:
            yield
        finally:
            await client.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- helpers ---------------------------------------------------------------------------
    def client_of(request: Request) -> CarrierClient:
        client: CarrierClient = request.app.state.client
        return client

    async def registry(call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, settings.registry_timeout_seconds)
        except TimeoutError:
            raise errors.Unavailable("registry did not answer in time") from None

    def t_of(request: Request) -> Translator:
        return Translator(getattr(request.state, "lang", "zh"))

    def current(request: Request) -> st.Subscriber | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            sid = signer.loads(raw, max_age=settings.session_max_age_seconds)
        except BadSignature:
            return None
        return store.subscriber(sid) if isinstance(sid, str) else None

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        t = t_of(request)
        other = "en" if t.lang == "zh" else "zh"
        context.update(
            t=t,
            demo=settings.demo,
            carrier=settings.carrier_name,
            signed_in=current(request) is not None,
            path=request.url.path,
            switch_url=f"{request.url.path}?lang={other}",
        )
        return templates.TemplateResponse(request, name, context, status_code=status)

    def locked_text(t: Translator, until: float) -> str:
        when = datetime.fromtimestamp(until, CST)
        today = datetime.now(CST).date() == when.date()
        return t("err.locked", time=f"{when:%H:%M}" if today else t.date_time(when))

    def failed(what: str, exc: BaseException) -> str:
        key = error_key(exc)
        if key == "err.server":
            log.error("%s failed", what, exc_info=exc)
        else:
            # SDK messages come from the registry, which never sees a number.
            log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        return key

    # -- middleware ------------------------------------------------------------------------
    @app.middleware("http")
    async def language_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        asked = request.query_params.get("lang")
        request.state.lang = pick_lang(asked, request.cookies.get(LANG_COOKIE))
        if request.method == "POST":
            origin = request.headers.get("origin")
            host = request.headers.get("host", "")
            if origin and origin not in (f"http://{host}", f"https://{host}"):
                return render(request, "error.html", 403, message=t_of(request)("err.forbidden"))
        response = await call_next(request)
        if asked in ("zh", "en"):
            response.set_cookie(
                LANG_COOKIE, asked, max_age=365 * 86400, samesite="lax", httponly=True
            )
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        t = t_of(request)
        message = t("err.page_missing") if exc.status_code == 404 else t("err.invalid")
        return render(request, "error.html", exc.status_code, message=message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return render(request, "error.html", 500, message=t_of(request)("err.server"))

    # -- sign-in ---------------------------------------------------------------------------
    def signin_page(
        request: Request,
        status: int = 200,
        *,
        error: str = "",
        phone: str = "",
        challenge: str = "",
        masked: str = "",
        notice: str = "",
    ) -> HTMLResponse:
        return render(
            request,
            "signin.html",
            status,
            error=error,
            phone=phone,
            challenge=challenge,
            masked=masked,
            notice=notice,
            demo_code=demo_codes.get(challenge, "") if challenge else "",
            minutes=st.CODE_TTL_SECONDS // 60,
        )

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        if current(request) is not None:
            return RedirectResponse("/me", status_code=303)
        notice = t_of(request)("signin.signed_out") if "bye" in request.query_params else ""
        return signin_page(request, notice=notice)

    @app.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request, phone: str = Form(""), id_tail: str = Form("")) -> Response:
        t = t_of(request)
        try:
            e164 = to_e164(phone.strip())
        except InvalidNumber:
            return signin_page(request, 400, error=t("err.bad_phone"), phone=phone)
        try:
            tail = st.id_tail(id_tail)
        except ValueError:
            return signin_page(request, 400, error=t("err.bad_tail"), phone=phone)
        try:
            challenge = await asyncio.to_thread(store.start_sign_in, e164, tail)
        except st.Locked as exc:
            log.info("sign-in refused for %s: locked", st.mask(e164))
            return signin_page(request, 429, error=locked_text(t, exc.until), phone=phone)
        except st.BadCredentials as exc:
            log.info("sign-in refused for %s: no match", st.mask(e164))
            msg = (
                t("err.bad_credentials_left", n=exc.remaining)
                if exc.remaining
                else t("err.bad_credentials")
            )
            return signin_page(request, 400, error=msg, phone=phone)
        if settings.demo:
            if len(demo_codes) > 1000:
                demo_codes.clear()
            demo_codes[challenge.id] = challenge.code
            log.info(
                "DEMO sign-in code for %s: %s (valid %d min)",
                st.mask(e164),
                challenge.code,
                st.CODE_TTL_SECONDS // 60,
            )
        else:
            assert send_code is not None
            try:
                await send_code(e164, challenge.code)
            except Exception as exc:
                return signin_page(request, 503, error=t(failed("sending a code", exc)))
            log.info("sign-in code sent to %s", st.mask(e164))
        return signin_page(request, challenge=challenge.id, masked=st.mask(e164))

    @app.post("/signin/code", response_class=HTMLResponse)
    async def signin_code(
        request: Request, challenge: str = Form(""), code: str = Form("")
    ) -> Response:
        t = t_of(request)
        e164 = store.challenge_number(challenge)
        if e164 is None:
            return signin_page(request, 400, error=t("err.challenge"))
        masked = st.mask(e164)
        if not _CODE_RE.fullmatch(code.strip()):
            return signin_page(
                request, 400, error=t("err.code_format"), challenge=challenge, masked=masked
            )
        try:
            sid = await asyncio.to_thread(store.verify_code, challenge, code)
        except st.Locked as exc:
            log.info("sign-in locked for %s", masked)
            return signin_page(request, 429, error=locked_text(t, exc.until))
        except st.WrongCode as exc:
            log.info("wrong sign-in code for %s (%d tries left)", masked, exc.remaining)
            return signin_page(
                request,
                400,
                error=t("err.wrong_code", n=exc.remaining),
                challenge=challenge,
                masked=masked,
            )
        except st.CodeExpired:
            return signin_page(request, 400, error=t("err.code_expired"))
        except st.SignInError:
            return signin_page(request, 400, error=t("err.challenge"))
        demo_codes.pop(challenge, None)
        log.info("signed in: %s", masked)
        response = RedirectResponse("/me", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            signer.dumps(sid),
            max_age=settings.session_max_age_seconds,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
            path="/",
        )
        return response

    @app.post("/signout")
    async def signout() -> Response:
        response = RedirectResponse("/?bye=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- 一证通查 ---------------------------------------------------------------------------
    async def progress_of(client: CarrierClient, rid: str) -> list[Progress] | None:
        try:
            return await registry(client.revocation(rid))
        except Exception as exc:
            failed("reading revocation progress", exc)
            return None

    @app.get("/me", response_class=HTMLResponse)
    async def me(request: Request) -> Response:
        sub = current(request)
        if sub is None:
            return RedirectResponse("/", status_code=303)
        t = t_of(request)
        client = client_of(request)
        numbers = store.numbers(sub.id)
        records = store.revocations(sub.id)
        shown: dict[int, list[st.RevocationRecord]] = {}
        for r in records:
            shown.setdefault(r.number_id, [])
            if len(shown[r.number_id]) < PROGRESS_PER_NUMBER:
                shown[r.number_id].append(r)
        wanted = [r for rs in shown.values() for r in rs]

        async def bindings() -> list[NumberView] | str:
            if not numbers:
                return []
            try:
                return await registry(
                    client.query(sub.subject, [(n.e164, n.tenure_start) for n in numbers])
                )
            except Exception as exc:
                return t(failed("一证通查 query", exc))

        views, results = await asyncio.gather(
            bindings(), asyncio.gather(*(progress_of(client, r.id) for r in wanted))
        )
        error = views if isinstance(views, str) else ""
        blocks: dict[int, list[ProgressBlock]] = {}
        # Newest first: the latest answer each app gave about each number.
        last: dict[tuple[int, str], str] = {}
        for r, res in zip(wanted, results, strict=True):
            blocks.setdefault(r.number_id, []).append(
                ProgressBlock(
                    r.id, r.number_id, r.scope, datetime.fromtimestamp(r.created_at, UTC), res
                )
            )
            for p in res or []:
                last.setdefault((r.number_id, p.platform_id), p.state)
        cards = []
        for i, n in enumerate(numbers):
            v = views[i] if isinstance(views, list) else None
            rejected = {
                pid for (nid, pid), state in last.items() if nid == n.id and state == "REJECTED"
            }
            cards.append(
                NumberCard(
                    n.id,
                    st.mask(n.e164),
                    (v.tenure_start if v and v.tenure_start else n.tenure_start),
                    _rows(v.platforms, True, rejected) if v else [],
                    _rows(v.platforms, False, rejected) if v else [],
                    v is not None,
                )
            )
        started = request.query_params.get("started", "")
        started_n = request.query_params.get("n", "")
        notice = ""
        if started and started_n.isdigit():
            n_orders = int(started_n)
            notice = (
                t("me.started_none")
                if n_orders == 0
                else t("me.started_one")
                if n_orders == 1
                else t("me.started", n=n_orders)
            )
        err_key = request.query_params.get("error", "")
        if err_key.startswith("err.") and err_key in _KNOWN_ERRORS:
            error = error or t(err_key)
        return render(
            request,
            "me.html",
            cards=cards,
            blocks=blocks,
            error=error,
            notice=notice,
        )

    def _revoke_target(
        sub: st.Subscriber, number_id: int, scope: str, platform_id: str
    ) -> tuple[st.Number, str, str] | None:
        n = store.number(sub.id, number_id)
        if n is None or scope not in ("previous", "platform"):
            return None
        if scope == "platform" and not _PLATFORM_ID_RE.fullmatch(platform_id):
            return None
        return n, scope, platform_id if scope == "platform" else ""

    @app.get("/me/confirm", response_class=HTMLResponse)
    async def confirm(
        request: Request, number: int = 0, scope: str = "", platform: str = ""
    ) -> Response:
        sub = current(request)
        if sub is None:
            return RedirectResponse("/", status_code=303)
        target = _revoke_target(sub, number, scope, platform)
        if target is None:
            return RedirectResponse("/me?error=err.invalid", status_code=303)
        n, scope, platform_id = target
        t = t_of(request)
        try:
            (view,) = await registry(
                client_of(request).query(sub.subject, [(n.e164, n.tenure_start)])
            )
        except Exception as exc:
            return RedirectResponse(f"/me?error={failed('confirm query', exc)}", status_code=303)
        if scope == "previous":
            names = [p.display_name for p in view.platforms if p.pre_tenure and not p.open_state]
            text = t("confirm.previous", n=len(names), phone=st.mask(n.e164), names=t.names(names))
        else:
            name = next(
                (p.display_name for p in view.platforms if p.platform_id == platform_id),
                platform_id,
            )
            text = t("confirm.platform", name=name, phone=st.mask(n.e164))
        return render(
            request,
            "confirm.html",
            text=text,
            number_id=n.id,
            scope=scope,
            platform_id=platform_id,
            # Fixed per confirmation page: a resubmitted form is answered, not repeated.
            request_id=secrets.token_hex(16),
        )

    @app.post("/me/revoke")
    async def revoke(
        request: Request,
        number_id: int = Form(0),
        scope: str = Form(""),
        platform_id: str = Form(""),
        request_id: str = Form(""),
    ) -> Response:
        sub = current(request)
        if sub is None:
            return RedirectResponse("/", status_code=303)
        if not _REQUEST_ID_RE.fullmatch(request_id):
            request_id = uuid.uuid4().hex  # an old page without one: no retry protection
        target = _revoke_target(sub, number_id, scope, platform_id)
        if target is None:
            return RedirectResponse("/me?error=err.invalid", status_code=303)
        n, scope, platform_id = target
        ids = [platform_id] if platform_id else []
        kind = Scope.PLATFORMS if ids else Scope.ALL_PRE_TENURE
        try:
            rid, orders = await registry(
                client_of(request).revoke(
                    sub.subject, n.e164, n.tenure_start, kind, ids, request_id=request_id
                )
            )
        except Exception as exc:
            return RedirectResponse(f"/me?error={failed('revocation', exc)}", status_code=303)
        store.add_revocation(rid, sub.id, n.id, scope, ids)
        log.info("revocation %s for %s: %d orders (%s)", rid, st.mask(n.e164), orders, scope)
        return RedirectResponse(f"/me?started={rid}&n={orders}#rev-{rid}", status_code=303)

    @app.get("/api/revocations/{rid}")
    async def revocation_api(request: Request, rid: str) -> Response:
        t = t_of(request)
        sub = current(request)
        if sub is None:
            return JSONResponse({"error": t("err.session")}, status_code=401)
        if not _REVOCATION_ID_RE.fullmatch(rid) or store.revocation(sub.id, rid) is None:
            return JSONResponse({"error": t("err.not_found")}, status_code=404)
        try:
            progress = await registry(client_of(request).revocation(rid))
        except Exception as exc:
            return JSONResponse({"error": t(failed("revocation progress", exc))}, status_code=503)
        final = all(p.state in FINAL_STATES for p in progress)
        settled = all(p.state in SETTLED_STATES for p in progress)
        return JSONResponse(
            {
                "id": rid,
                "final": final,
                "settled": settled,
                "summary": t.progress_summary([p.state for p in progress]),
                "status": t(
                    "progress.finished"
                    if final
                    else "progress.waiting"
                    if settled
                    else "progress.live"
                ),
                "platforms": [
                    {
                        "id": p.platform_id,
                        "name": p.display_name,
                        "category": t.category(p.category),
                        "state": p.state,
                        "label": t.state(p.state),
                        "reason": t("progress.reason", reason=p.reason) if p.reason else "",
                        "note": t("progress.overdue_note") if p.state == "OVERDUE" else "",
                        "orders": p.orders,
                    }
                    for p in progress
                ],
            }
        )

    # -- reassigned check (the carrier's lookup service for callers) -----------------------
    @app.get("/check", response_class=HTMLResponse)
    async def check_form(request: Request) -> Response:
        return render(request, "check.html", phone="", since="", result="", since_text="", error="")

    @app.post("/check", response_class=HTMLResponse)
    async def check(request: Request, phone: str = Form(""), since: str = Form("")) -> Response:
        t = t_of(request)

        def page(status: int, error: str = "", result: str = "", when: str = "") -> Response:
            return render(
                request,
                "check.html",
                status,
                phone=phone,
                since=since,
                error=error,
                result=result,
                since_text=when,
            )

        who = request.client.host if request.client else "?"
        if not check_limit.allow(who):
            return page(429, error=t("err.busy"))
        try:
            e164 = to_e164(phone.strip())
        except InvalidNumber:
            return page(400, error=t("err.bad_phone"))
        try:
            day = datetime.strptime(since.strip(), "%Y-%m-%d").replace(tzinfo=CST)
        except ValueError:
            return page(400, error=t("check.bad_date"))
        if day > datetime.now(CST):
            return page(400, error=t("check.future"))
        try:
            (answer,) = await registry(client_of(request).check_reassigned([(e164, day)]))
        except Exception as exc:
            return page(503, error=t(failed("reassigned check", exc)))
        result = {"REASSIGNED": "yes", "NOT_REASSIGNED": "no"}.get(answer, "nodata")
        return page(200, result=result, when=t.date(day))

    return app


_KNOWN_ERRORS = frozenset(key for _, key in _ERROR_KEYS) | {"err.server"}
