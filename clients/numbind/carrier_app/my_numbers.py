"""My numbers: 一证通查 (every number under the subscriber's ID and the apps bound to it) and
一键解绑 (the previous holder's apps, an overdue app again, or one app of the subscriber's
own), with each app's progress in the one list that names it."""

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
from numbind.carrier_app.views import AppRow, NumberCard, asked_by_group, number_card
from numbind.carrier_app.wording import card_json
from numbind.sdk import NumberView, Scope
from numbind.sdk import RevocationProgress as Progress

__all__ = ["router"]

log = logging.getLogger("numbind.carrier_app")

router = APIRouter()

# Revocations per number whose progress the page reads, newest first: enough for an
# unbinding, a retry of its overdue apps and a few of the subscriber's own apps.
REVOCATIONS_PER_NUMBER = 5
SCOPES = ("previous", "retry", "platform")
_PLATFORM_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_REQUEST_ID_RE = re.compile(r"[0-9a-f]{32}")
# One-off notices a redirect may carry in ?notice= (anything else is ignored).
NOTICES = {"nothing": "me.nothing"}


def _to_signin() -> Response:
    return RedirectResponse("/", status_code=303)


async def _progress(page: Page, rid: str) -> list[Progress] | None:
    try:
        return await page.registry(page.client.revocation(rid))
    except Exception as exc:
        page.failed("reading revocation progress", exc)
        return None


async def _views(
    page: Page, sub: st.Subscriber, numbers: list[st.Number]
) -> list[NumberView] | str:
    """The registry's view of every number, or the i18n key of what to say instead."""
    if not numbers:
        return []
    try:
        views = await page.registry(
            page.client.query(sub.subject, [(n.e164, n.tenure_start) for n in numbers])
        )
    except Exception as exc:
        return page.failed("一证通查 query", exc)
    for v in views:
        if v.order_deadline is not None:
            page.state.order_deadline = v.order_deadline
    return views


async def _cards(
    page: Page, sub: st.Subscriber, numbers: list[st.Number], *, query: bool = True
) -> tuple[list[NumberCard], str]:
    """One card per number, and the i18n key of an error to show ("" when none). Without
    ``query`` the cards hold only what was asked (no attestation is spent)."""
    records: dict[int, list[st.RevocationRecord]] = {n.id: [] for n in numbers}
    for r in page.store.revocations(sub.id, limit=200):
        mine = records.get(r.number_id)
        if mine is not None and len(mine) < REVOCATIONS_PER_NUMBER:
            mine.append(r)
    wanted = [r for rs in records.values() for r in rs]
    views, results = await asyncio.gather(
        _views(page, sub, numbers) if query else asyncio.sleep(0, result=None),
        asyncio.gather(*(_progress(page, r.id) for r in wanted)),
    )
    progress = dict(zip((r.id for r in wanted), results, strict=True))
    cards = []
    for i, n in enumerate(numbers):
        asked, asking = asked_by_group(records[n.id], [progress[r.id] for r in records[n.id]])
        view = views[i] if isinstance(views, list) else None
        cards.append(number_card(n, view, asked, asking, page.state.order_deadline))
    return cards, views if isinstance(views, str) else ""


@router.get("/me", response_class=HTMLResponse)
async def me(page: PageDep) -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    cards, error = await _cards(page, sub, page.store.numbers(sub.id))
    err_key = page.request.query_params.get("error", "")
    if not error and err_key.startswith("err.") and err_key in KNOWN_ERRORS:
        error = err_key
    notice = NOTICES.get(page.request.query_params.get("notice", ""), "")
    return page.render(
        "me.html",
        cards=cards,
        error=page.t(error) if error else "",
        notice=page.t(notice) if notice else "",
        words=page.words,
    )


def _choose(card: NumberCard, scope: str, asked_for: list[str]) -> list[AppRow]:
    """The apps a confirmation offers: for 一键解绑 the previous holder's apps nobody asked
    yet, for a retry the overdue ones (never one that refused), for one app of the
    subscriber's own that app if bound or overdue; narrowed to ``asked_for`` if given."""
    if scope == "previous":
        rows = card.previous.to_ask
    elif scope == "retry":
        rows = card.previous.overdue
    else:
        rows = [r for r in card.mine.rows if r.state in ("", "OVERDUE")]
    return [r for r in rows if not asked_for or r.platform_id in asked_for]


def _platform_ids(text: str) -> list[str] | None:
    """A form's comma-separated platform ids, or None if any is malformed."""
    ids = [p for p in text.split(",") if p]
    return ids if all(_PLATFORM_ID_RE.fullmatch(p) for p in ids) else None


@router.get("/me/confirm", response_class=HTMLResponse)
async def confirm(page: PageDep, number: int = 0, scope: str = "", platforms: str = "") -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    n = page.store.number(sub.id, number)
    asked_for = _platform_ids(platforms)
    if n is None or scope not in SCOPES or asked_for is None:
        return RedirectResponse("/me?error=err.invalid", status_code=303)
    (card,), error = await _cards(page, sub, [n])
    if error:
        return RedirectResponse(f"/me?error={error}", status_code=303)
    rows = _choose(card, scope, asked_for)
    if not rows or (scope == "platform" and len(rows) != 1):
        return RedirectResponse(f"/me?notice=nothing#n-{n.id}", status_code=303)
    words = page.words
    if scope == "previous":
        text = words.confirm_previous(card, rows)
    elif scope == "retry":
        text = words.confirm_retry(card, rows)
    else:
        text = words.confirm_platform(card, rows[0])
    return page.render(
        "confirm.html",
        text=text,
        number_id=n.id,
        scope=scope,
        platforms=",".join(r.platform_id for r in rows),
        retry=scope == "retry" or rows[0].state == "OVERDUE",
        # Fixed per confirmation page: a resubmitted form is answered, not repeated.
        request_id=secrets.token_hex(16),
    )


@router.post("/me/revoke")
async def revoke(
    page: PageDep,
    number_id: int = Form(0),
    scope: str = Form(""),
    platforms: str = Form(""),
    request_id: str = Form(""),
) -> Response:
    sub = page.subscriber
    if sub is None:
        return _to_signin()
    if not _REQUEST_ID_RE.fullmatch(request_id):
        request_id = uuid.uuid4().hex  # an old page without one: no retry protection
    n = page.store.number(sub.id, number_id)
    ids = _platform_ids(platforms)
    # Always named apps: the confirmation named them, and an app that refused is never
    # asked again unless the subscriber picks it.
    if n is None or scope not in SCOPES or not ids or (scope == "platform" and len(ids) != 1):
        return RedirectResponse("/me?error=err.invalid", status_code=303)
    kind = Scope.PLATFORMS if scope == "platform" else Scope.ALL_PRE_TENURE
    try:
        call = page.client.revoke(
            sub.subject, n.e164, n.tenure_start, kind, ids, request_id=request_id
        )
        rid, orders = await page.registry(call)
    except Exception as exc:
        return RedirectResponse(f"/me?error={page.failed('revocation', exc)}", status_code=303)
    log.info("revocation %s for %s: %d orders (%s)", rid, st.mask(n.e164), orders, scope)
    if not orders:
        return RedirectResponse(f"/me?notice=nothing#n-{n.id}", status_code=303)
    page.store.add_revocation(rid, sub.id, n.id, scope, ids)
    # Nothing about the request rides in the URL: the page shows it while it lasts.
    return RedirectResponse(f"/me#n-{n.id}", status_code=303)


@router.get("/api/numbers/{number_id}")
async def number_progress(page: PageDep, number_id: int) -> Response:
    """One number's live progress (static/app.js polls it while apps are being asked)."""
    t = page.t
    sub = page.subscriber
    if sub is None:
        return JSONResponse({"error": t("err.session")}, status_code=401)
    n = page.store.number(sub.id, number_id)
    if n is None:
        return JSONResponse({"error": t("err.not_found")}, status_code=404)
    (card,), _ = await _cards(page, sub, [n], query=False)
    return JSONResponse(card_json(page.words, card))
