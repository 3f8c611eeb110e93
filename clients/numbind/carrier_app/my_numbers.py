"""My numbers: 一证通查 (every number under the subscriber's ID and the apps bound to it) and
一键解绑 (revoke the previous holder's bindings, or one app's), with live progress."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import uuid

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from numbind.carrier_app import store as st
from numbind.carrier_app.deps import KNOWN_ERRORS, Page, PageDep
from numbind.carrier_app.views import number_cards, progress_blocks, progress_json
from numbind.sdk import NumberView, Scope
from numbind.sdk import RevocationProgress as Progress

__all__ = ["router"]

log = logging.getLogger("numbind.carrier_app")

router = APIRouter()

# Revocations shown per number on /me, newest first.
PROGRESS_PER_NUMBER = 3
_PLATFORM_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_REQUEST_ID_RE = re.compile(r"[0-9a-f]{32}")
_REVOCATION_ID_RE = re.compile(r"[0-9a-f-]{36}")


def _to_signin() -> Response:
    return RedirectResponse("/", status_code=303)


async def _progress(page: Page, rid: str) -> list[Progress] | None:
    try:
        return await page.registry(page.client.revocation(rid))
    except Exception as exc:
        page.failed("reading revocation progress", exc)
        return None


async def _bindings(
    page: Page, sub: st.Subscriber, numbers: list[st.Number]
) -> list[NumberView] | str:
    """The registry's view of every number, or the message to show instead."""
    if not numbers:
        return []
    try:
        return await page.registry(
            page.client.query(sub.subject, [(n.e164, n.tenure_start) for n in numbers])
        )
    except Exception as exc:
        return page.t(page.failed("一证通查 query", exc))


def _started_notice(page: Page) -> str:
    """What a redirect after 一键解绑 (?started=ID&n=ORDERS) announces."""
    started = page.request.query_params.get("started", "")
    started_n = page.request.query_params.get("n", "")
    if not (started and started_n.isdigit()):
        return ""
    n_orders = int(started_n)
    if n_orders == 0:
        return page.t("me.started_none")
    return page.t("me.started_one") if n_orders == 1 else page.t("me.started", n=n_orders)


@router.get("/me", response_class=HTMLResponse)
async def me(page: PageDep) -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    numbers = page.store.numbers(sub.id)
    shown: dict[int, list[st.RevocationRecord]] = {}
    for r in page.store.revocations(sub.id):
        shown.setdefault(r.number_id, [])
        if len(shown[r.number_id]) < PROGRESS_PER_NUMBER:
            shown[r.number_id].append(r)
    wanted = [r for rs in shown.values() for r in rs]
    views, results = await asyncio.gather(
        _bindings(page, sub, numbers), asyncio.gather(*(_progress(page, r.id) for r in wanted))
    )
    error = views if isinstance(views, str) else ""
    blocks, last = progress_blocks(wanted, list(results))
    cards = number_cards(numbers, views if isinstance(views, list) else None, last)
    err_key = page.request.query_params.get("error", "")
    if err_key.startswith("err.") and err_key in KNOWN_ERRORS:
        error = error or page.t(err_key)
    return page.render(
        "me.html", cards=cards, blocks=blocks, error=error, notice=_started_notice(page)
    )


def _revoke_target(
    page: Page, sub: st.Subscriber, number_id: int, scope: str, platform_id: str
) -> tuple[st.Number, str, str] | None:
    n = page.store.number(sub.id, number_id)
    if n is None or scope not in ("previous", "platform"):
        return None
    if scope == "platform" and not _PLATFORM_ID_RE.fullmatch(platform_id):
        return None
    return n, scope, platform_id if scope == "platform" else ""


@router.get("/me/confirm", response_class=HTMLResponse)
async def confirm(page: PageDep, number: int = 0, scope: str = "", platform: str = "") -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    target = _revoke_target(page, sub, number, scope, platform)
    if target is None:
        return RedirectResponse("/me?error=err.invalid", status_code=303)
    n, scope, platform_id = target
    t = page.t
    try:
        (view,) = await page.registry(page.client.query(sub.subject, [(n.e164, n.tenure_start)]))
    except Exception as exc:
        return RedirectResponse(f"/me?error={page.failed('confirm query', exc)}", status_code=303)
    if scope == "previous":
        names = [p.display_name for p in view.platforms if p.pre_tenure and not p.open_state]
        text = t("confirm.previous", n=len(names), phone=st.mask(n.e164), names=t.names(names))
    else:
        name = next(
            (p.display_name for p in view.platforms if p.platform_id == platform_id),
            platform_id,
        )
        text = t("confirm.platform", name=name, phone=st.mask(n.e164))
    return page.render(
        "confirm.html",
        text=text,
        number_id=n.id,
        scope=scope,
        platform_id=platform_id,
        # Fixed per confirmation page: a resubmitted form is answered, not repeated.
        request_id=secrets.token_hex(16),
    )


@router.post("/me/revoke")
async def revoke(
    page: PageDep,
    number_id: int = Form(0),
    scope: str = Form(""),
    platform_id: str = Form(""),
    request_id: str = Form(""),
) -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    if not _REQUEST_ID_RE.fullmatch(request_id):
        request_id = uuid.uuid4().hex  # an old page without one: no retry protection
    target = _revoke_target(page, sub, number_id, scope, platform_id)
    if target is None:
        return RedirectResponse("/me?error=err.invalid", status_code=303)
    n, scope, platform_id = target
    ids = [platform_id] if platform_id else []
    kind = Scope.PLATFORMS if ids else Scope.ALL_PRE_TENURE
    try:
        rid, orders = await page.registry(
            page.client.revoke(
                sub.subject, n.e164, n.tenure_start, kind, ids, request_id=request_id
            )
        )
    except Exception as exc:
        return RedirectResponse(f"/me?error={page.failed('revocation', exc)}", status_code=303)
    page.store.add_revocation(rid, sub.id, n.id, scope, ids)
    log.info("revocation %s for %s: %d orders (%s)", rid, st.mask(n.e164), orders, scope)
    return RedirectResponse(f"/me?started={rid}&n={orders}#rev-{rid}", status_code=303)


@router.get("/api/revocations/{rid}")
async def revocation_api(page: PageDep, rid: str) -> Response:
    t = page.t
    sub = page.subscriber
    if sub is None:
        return JSONResponse({"error": t("err.session")}, status_code=401)
    if not _REVOCATION_ID_RE.fullmatch(rid) or page.store.revocation(sub.id, rid) is None:
        return JSONResponse({"error": t("err.not_found")}, status_code=404)
    try:
        progress = await page.registry(page.client.revocation(rid))
    except Exception as exc:
        return JSONResponse({"error": t(page.failed("revocation progress", exc))}, status_code=503)
    return JSONResponse(progress_json(t, rid, progress))
