"""The carrier's reassigned-number lookup for callers: has this number changed hands since
a date? (Like the US Reassigned Numbers Database, answered from the registry.)"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from numbind.carrier_app.deps import PageDep
from numbind.carrier_app.throttle import client_key
from numbind.sdk.dates import start_of_day
from numbind.sdk.phone import InvalidNumber, to_e164

__all__ = ["router"]

router = APIRouter()


@router.get("/check", response_class=HTMLResponse)
async def check_form(page: PageDep) -> Response:
    return page.render("check.html", phone="", since="", result="", since_text="", error="")


@router.post("/check", response_class=HTMLResponse)
async def check(page: PageDep, phone: str = Form(""), since: str = Form("")) -> Response:
    t = page.t

    def answer(status: int, error: str = "", result: str = "", when: str = "") -> Response:
        return page.render(
            "check.html",
            status,
            phone=phone,
            since=since,
            error=error,
            result=result,
            since_text=when,
        )

    if not page.state.check_limit.allow(client_key(page.request)):
        return answer(429, error=t("err.busy"))
    region = page.settings.region
    try:
        e164 = to_e164(phone.strip(), 0, region)
    except InvalidNumber:
        return answer(400, error=t("err.bad_phone"))
    try:
        # The form asks for a date: 00:00 that day where the carrier serves (the CLI's rule).
        day = start_of_day(date.fromisoformat(since.strip()), region)
    except ValueError:
        return answer(400, error=t("check.bad_date"))
    if day > datetime.now(UTC):
        return answer(400, error=t("check.future"))
    try:
        (reassigned,) = await page.registry(page.client.check_reassigned([(e164, day)]))
    except Exception as exc:
        return answer(503, error=t(page.failed("reassigned check", exc)))
    result = {"REASSIGNED": "yes", "NOT_REASSIGNED": "no"}.get(reassigned, "nodata")
    return answer(200, result=result, when=t.date(day))
