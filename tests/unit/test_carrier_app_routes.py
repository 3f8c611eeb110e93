"""The carrier app's routes over HTTP (no browser, a stand-in registry client): the paths the
browser tests do not walk — a real SMS gateway instead of demo codes, the same-origin
check, error pages and headers, the progress API's refusals, sign-out, the check throttle.
The sessions, form tokens, throttles and links of the attack review: test_carrier_app_security."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from numbind.carrier_app.app import create_app
from numbind.carrier_app.i18n import Translator
from numbind.sdk import Scope, order_reference

from tests.unit.carrier_app_http import (
    ORDER,
    PHONE,
    RID,
    FakeRegistry,
    Gateway,
    csrf,
    form_token,
    make_app,
    serving,
    settings_for,
    sign_in,
    zh,
)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
async def client(
    tmp_path: Path, registry: FakeRegistry, gateway: Gateway
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as c:
        yield c
    assert registry.closed


async def _sign_in(client: httpx.AsyncClient, gateway: Gateway) -> None:
    done = await sign_in(client, gateway)
    cookie = done.headers["set-cookie"]
    assert "__Host-nb_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" in cookie


def test_outside_demo_mode_an_sms_gateway_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="send_code"):
        create_app(settings_for(tmp_path))


async def test_sign_in_by_sms_then_my_numbers_then_sign_out(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    assert (await client.get("/me")).headers["location"] == "/"
    await _sign_in(client, gateway)
    assert (await client.get("/")).headers["location"] == "/me"
    me = await client.get("/me")
    assert me.status_code == 200 and "示例网盘" in me.text and "138****8000" in me.text
    assert PHONE not in me.text and "13800138000" not in me.text
    out = await client.post("/signout", data={"csrf": csrf(me.text)})
    assert out.status_code == 303 and out.headers["location"] == "/?bye=1"
    assert (await client.get("/me")).headers["location"] == "/"
    assert zh("signin.signed_out") in (await client.get("/?bye=1")).text


async def test_a_gateway_failure_reads_as_plain_words(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    async with serving(make_app(settings_for(tmp_path), registry, Gateway(fail=True))) as c:
        form = {"phone": "13800138000", "id_tail": "31002X", "csrf": await form_token(c)}
        page = await c.post("/signin", data=form)
    assert page.status_code == 503
    assert zh("err.server") in page.text and "SMS gateway down" not in page.text


async def test_confirm_names_the_apps_then_revoke_then_live_progress(
    client: httpx.AsyncClient, gateway: Gateway, registry: FakeRegistry
) -> None:
    await _sign_in(client, gateway)
    confirm = await client.get("/me/confirm", params={"number": 1, "scope": "previous"})
    assert confirm.status_code == 200
    assert "示例网盘" in confirm.text and "最长不超过 24 小时" in confirm.text
    assert 'name="platforms" value="acme"' in confirm.text
    request_id = confirm.text.split('name="request_id" value="', 1)[1].split('"', 1)[0]
    form = {
        "number_id": 1,
        "scope": "previous",
        "platforms": "acme",
        "request_id": request_id,
        "csrf": csrf(confirm.text),
    }
    done = await client.post("/me/revoke", data=form)
    assert done.status_code == 303
    # Nothing about the request rides in the URL: the page shows it while it lasts.
    assert done.headers["location"] == "/me#n-1"
    assert registry.revoked == [(PHONE, Scope.ALL_PRE_TENURE, ["acme"], request_id)]
    live = (await client.get("/api/numbers/1")).json()
    assert live["live"] is False  # both apps have settled
    apps = {a["id"]: a for a in live["groups"]["previous"]["apps"]}
    assert (apps["acme"]["state"], apps["bank"]["state"]) == ("DONE", "REJECTED")
    assert "account frozen" in apps["bank"]["details"][0]
    reference = order_reference(ORDER)  # the refusing platform's order, as a holder quotes it
    assert reference in apps["bank"]["details"][1]
    assert live["groups"]["previous"]["tone"] == "warn"
    page = (await client.get("/me")).text
    assert 'data-role="banner"' not in page  # settled: no "notifying N apps" any more
    assert reference in page and "account frozen" in page
    # Another subscriber's or a made-up number is not found; a revocation must name apps.
    assert (await client.get("/api/numbers/99")).status_code == 404
    bad = await client.post(
        "/me/revoke", data={"number_id": 1, "scope": "previous", "csrf": form["csrf"]}
    )
    assert bad.headers["location"] == "/me?error=err.invalid"
    bad = await client.post("/me/revoke", data={**form, "platforms": "acme,Bad!"})
    assert bad.headers["location"] == "/me?error=err.invalid"


async def test_a_revocation_with_nothing_to_do_says_so_once(
    client: httpx.AsyncClient, gateway: Gateway, registry: FakeRegistry
) -> None:
    await _sign_in(client, gateway)

    async def nothing(*args: Any, **kw: Any) -> tuple[str, int]:
        return RID, 0

    registry.revoke = nothing  # type: ignore[method-assign]
    form = {
        "number_id": 1,
        "scope": "retry",
        "platforms": "acme",
        "request_id": "a" * 32,
        "csrf": await form_token(client, "/me"),
    }
    done = await client.post("/me/revoke", data=form)
    assert done.headers["location"] == "/me?notice=nothing#n-1"
    assert zh("me.nothing") in (await client.get("/me?notice=nothing")).text
    assert zh("me.nothing") not in (await client.get("/me?notice=bogus")).text


async def test_progress_api_without_a_session_is_401_json(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/numbers/1")
    assert answer.status_code == 401
    assert answer.json() == {"error": zh("err.session")}


async def test_fields_keep_their_values_after_an_error(client: httpx.AsyncClient) -> None:
    form = {"phone": "12", "id_tail": "31002X", "csrf": await form_token(client)}
    page = await client.post("/signin", data=form)
    assert page.status_code == 400 and zh("err.bad_phone") in page.text
    assert 'value="12"' in page.text and 'value="31002X"' in page.text


async def test_larger_text_is_a_remembered_choice(client: httpx.AsyncClient) -> None:
    page = await client.get("/?text=large")
    assert '<html lang="zh-CN" class="large-text">' in page.text
    assert "nb_text=large" in page.headers["set-cookie"]
    assert 'class="large-text"' in (await client.get("/check")).text
    assert 'class="large-text"' not in (await client.get("/check?text=normal")).text


async def test_a_post_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    page = await client.post(
        "/signin",
        data={"phone": "13800138000", "id_tail": "31002X", "csrf": await form_token(client)},
        headers={"origin": "https://evil.example"},
    )
    assert page.status_code == 403 and zh("err.forbidden") in page.text


async def test_missing_pages_headers_and_language(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404 and zh("err.page_missing") in missing.text
    assert missing.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    assert missing.headers["x-content-type-options"] == "nosniff"
    english = await client.get("/check?lang=en")
    assert "nb_lang=en" in english.headers["set-cookie"]
    assert Translator("en")("nav.check") in english.text
    static = await client.get("/static/app.css")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"


async def test_reassigned_check_answers_and_is_throttled(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    app = make_app(settings_for(tmp_path, check_per_minute=1), registry, Gateway())
    async with serving(app) as c:
        form = {"phone": "13800138000", "since": "2024-01-01", "csrf": await form_token(c)}
        first = await c.post("/check", data=form)
        second = await c.post("/check", data=form)
    assert first.status_code == 200 and "result result-no" in first.text
    assert second.status_code == 429 and zh("err.busy") in second.text


@pytest.mark.parametrize(
    ("region", "phone", "e164", "instant"),
    [
        ("CN", "13800138000", "+8613800138000", "2023-12-31T16:00:00+00:00"),
        ("GB", "07946 095800", "+447946095800", "2024-01-01T00:00:00+00:00"),
    ],
)
async def test_a_date_means_midnight_in_the_apps_region(
    tmp_path: Path, registry: FakeRegistry, region: str, phone: str, e164: str, instant: str
) -> None:
    """The app's region decides both how a number without +CC is read and what 00:00 a date
    alone means: the command line's --region rule, not a fixed +08:00."""
    app = make_app(settings_for(tmp_path, region=region), registry, Gateway())
    async with serving(app) as c:
        form = {"phone": phone, "since": "2024-01-01", "csrf": await form_token(c, "/check")}
        page = await c.post("/check", data=form)
    assert page.status_code == 200, page.text
    ((asked_phone, since),) = registry.checked
    assert asked_phone == e164
    assert since.astimezone(UTC).isoformat() == instant


def test_an_unknown_region_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        settings_for(tmp_path, region="XX")
