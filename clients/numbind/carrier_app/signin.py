"""Sign-in: number and the ID's last six, then a one-time code, then a session; sign-out."""

from __future__ import annotations

import asyncio
import logging
import re

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from numbind.carrier_app import store as st
from numbind.carrier_app.deps import Page, PageDep
from numbind.carrier_app.throttle import client_key, seconds_text
from numbind.sdk.phone import InvalidNumber, to_e164

__all__ = ["router"]

log = logging.getLogger("numbind.carrier_app")

router = APIRouter()

_CODE_RE = re.compile(r"\d{6}")


def signin_page(
    page: Page,
    status: int = 200,
    *,
    error: str = "",
    phone: str = "",
    id_tail: str = "",
    challenge: str = "",
    masked: str = "",
    notice: str = "",
) -> HTMLResponse:
    return page.render(
        "signin.html",
        status,
        error=error,
        phone=phone,
        id_tail=id_tail,
        challenge=challenge,
        masked=masked,
        notice=notice,
        demo_code=page.state.demo_codes.get(challenge, "") if challenge else "",
        minutes=st.CODE_TTL_SECONDS // 60,
    )


@router.get("/", response_class=HTMLResponse)
async def home(page: PageDep) -> Response:
    if page.subscriber is not None:
        return RedirectResponse("/me", status_code=303)
    notice = page.t("signin.signed_out") if "bye" in page.request.query_params else ""
    return signin_page(page, notice=notice)


def _too_fast(page: Page) -> float:
    """Seconds this client address must wait before another sign-in try (0: none)."""
    return page.state.signin_limit.take(client_key(page.request))


@router.post("/signin", response_class=HTMLResponse)
async def signin(page: PageDep, phone: str = Form(""), id_tail: str = Form("")) -> Response:
    t = page.t
    wait = _too_fast(page)
    if wait:
        error = t("err.wait", seconds=seconds_text(wait))
        return signin_page(page, 429, error=error, phone=phone, id_tail=id_tail)
    try:
        e164 = to_e164(phone.strip(), 0, page.settings.region)
    except InvalidNumber:
        return signin_page(page, 400, error=t("err.bad_phone"), phone=phone, id_tail=id_tail)
    try:
        tail = st.id_tail(id_tail)
    except ValueError:
        return signin_page(page, 400, error=t("err.bad_tail"), phone=phone, id_tail=id_tail)
    try:
        challenge = await asyncio.to_thread(page.store.start_sign_in, e164, tail)
    except st.Delayed as exc:
        log.info("sign-in refused for %s: backing off", st.mask(e164))
        return signin_page(page, 429, error=page.wait_text(exc.until), phone=phone, id_tail=id_tail)
    except st.BadCredentials as exc:
        log.info("sign-in refused for %s: no match", st.mask(e164))
        msg = (
            page.wait_text(exc.retry_at, "err.bad_credentials_wait")
            if exc.retry_at
            else t("err.bad_credentials")
        )
        return signin_page(page, 400, error=msg, phone=phone, id_tail=id_tail)
    if page.settings.demo:
        demo_codes = page.state.demo_codes
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
        send_code = page.state.send_code
        assert send_code is not None  # create_app refuses to run without one
        try:
            await send_code(e164, challenge.code)
        except Exception as exc:
            return signin_page(page, 503, error=t(page.failed("sending a code", exc)))
        log.info("sign-in code sent to %s", st.mask(e164))
    return signin_page(page, challenge=challenge.id, masked=st.mask(e164))


@router.post("/signin/code", response_class=HTMLResponse)
async def signin_code(page: PageDep, challenge: str = Form(""), code: str = Form("")) -> Response:
    t = page.t
    wait = _too_fast(page)
    if wait:
        return signin_page(page, 429, error=t("err.wait", seconds=seconds_text(wait)))
    e164 = page.store.challenge_number(challenge)
    if e164 is None:
        return signin_page(page, 400, error=t("err.challenge"))
    masked = st.mask(e164)
    if not _CODE_RE.fullmatch(code.strip()):
        return signin_page(
            page, 400, error=t("err.code_format"), challenge=challenge, masked=masked
        )
    try:
        sid = await asyncio.to_thread(page.store.verify_code, challenge, code)
    except st.CodeSpent:
        log.info("too many wrong sign-in codes for %s: the challenge is over", masked)
        return signin_page(page, 400, error=t("err.code_spent"))
    except st.WrongCode as exc:
        log.info("wrong sign-in code for %s (%d tries left)", masked, exc.remaining)
        return signin_page(
            page,
            400,
            error=t("err.wrong_code", n=exc.remaining),
            challenge=challenge,
            masked=masked,
        )
    except st.CodeExpired:
        return signin_page(page, 400, error=t("err.code_expired"))
    except st.SignInError:
        return signin_page(page, 400, error=t("err.challenge"))
    page.state.demo_codes.pop(challenge, None)
    log.info("signed in: %s", masked)
    response = RedirectResponse("/me", status_code=303)
    page.state.sessions.start(page.request, response, sid)
    return response


@router.post("/signout")
async def signout(page: PageDep) -> Response:
    response = RedirectResponse("/?bye=1", status_code=303)
    page.state.sessions.end(page.request, response)
    return response
