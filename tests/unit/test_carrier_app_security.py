"""The carrier app against the attack review (issue 10, finding 6): sign-out really ends a
session, cookies are Secure, every POST needs the session's form token, and no page links
off-site. Each test here failed on the app before those fixes."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from fastapi import FastAPI
from itsdangerous import BadSignature, URLSafeTimedSerializer
from numbind.carrier_app.__main__ import main
from numbind.carrier_app.app import AppSettings
from starlette.types import Message

from tests.unit.carrier_app_http import (
    BASE_URL,
    SECRET,
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

COOKIE = "__Host-nb_session"


class Links(HTMLParser):
    """Every URL a page points at (links, form targets, scripts, styles, images), and its
    POST forms with their hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.post_forms: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in ("href", "action", "src", "formaction"):
            if name in a:
                self.urls.append(a[name])
        if tag == "form" and a.get("method", "").lower() == "post":
            self.post_forms.append({"@action": a.get("action", "")})
        if tag == "input" and a.get("type") == "hidden" and self.post_forms:
            self.post_forms[-1][a.get("name", "")] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.post_forms and "@closed" not in self.post_forms[-1]:
            self.post_forms[-1]["@closed"] = "1"


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


def off_site(page_url: str, url: str) -> bool:
    """Whether a browser following ``url`` on ``page_url`` would leave the site. Browsers
    (the WHATWG URL parser) drop leading spaces and controls, tabs and newlines anywhere,
    read a backslash as a slash, and take any run of two or more leading slashes as the
    start of a host name."""
    seen = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(33))))
    seen = seen.replace("\\", "/")
    if seen == "data:,":  # the page's empty icon
        return False
    if seen.startswith("//"):
        return True
    target = urlsplit(urljoin(page_url, seen))
    return target.scheme not in ("http", "https") or target.netloc != urlsplit(page_url).netloc


async def raw_get(app: FastAPI, raw_path: bytes, query: bytes) -> tuple[int, str, str]:
    """GET as uvicorn hands it to the app: ``path`` is the target percent-decoded, unchecked
    (httpx would tidy a path like ``/\\evil`` before the app saw it). Returns the status, the
    Location header and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [(b"host", b"testserver")],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers.get("location", ""), body.decode()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return settings_for(tmp_path)


# -- sessions ----------------------------------------------------------------------------
async def test_a_copied_cookie_is_refused_after_sign_out(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway
) -> None:
    async with serving(make_app(settings, registry, gateway)) as client:
        await sign_in(client, gateway)
        me = await client.get("/me")
        assert me.status_code == 200
        copied = dict(client.cookies)
        out = await client.post("/signout", data={"csrf": csrf(me.text)})
        assert out.status_code == 303
        assert (await client.get("/me")).headers["location"] == "/"
        # Someone who copied the cookie before the sign-out is refused too.
        client.cookies.clear()
        client.cookies.update(copied)
        again = await client.get("/me")
        assert again.status_code == 303 and again.headers["location"] == "/"
        assert (await client.get("/api/numbers/1")).status_code == 401


async def test_the_cookie_carries_only_an_opaque_random_id(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway
) -> None:
    async with serving(make_app(settings, registry, gateway)) as client:
        done = await sign_in(client, gateway)
        (first,) = client.cookies.values()
        client.cookies.clear()
        await sign_in(client, gateway)
        (second,) = client.cookies.values()
    assert "Secure" in done.headers["set-cookie"]
    assert first != second and re.fullmatch(r"[A-Za-z0-9_-]{43}", first)
    # Not a signed subscriber id (which stays valid as long as the signature does).
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(SECRET, salt="numbind-carrier-session").loads(first)


async def test_sign_in_never_keeps_a_session_id_the_browser_had_before(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway
) -> None:
    """Session fixation: an id planted before sign-in does not become a signed-in one."""
    async with serving(make_app(settings, registry, gateway)) as client:
        await client.get("/")
        planted = client.cookies.get(COOKIE)
        assert planted, "every browser gets an id (it carries the sign-in form's token)"
        await sign_in(client, gateway)
        assert client.cookies[COOKIE] != planted
        async with serving(make_app(settings, registry, gateway)) as other:
            other.cookies.set(COOKIE, planted)
            assert (await other.get("/me")).headers["location"] == "/"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_on_the_server_when_idle_and_when_old(tmp_path: Path) -> None:
    from numbind.carrier_app.sessions import SessionStore
    from numbind.carrier_app.store import Store

    clock = Clock()
    sub = Store(tmp_path / "app.db", SECRET).enroll(
        "11010519491231002X", "+8613800138000", __import__("datetime").datetime.now().astimezone()
    )
    sessions = SessionStore(
        tmp_path / "app.db", idle_seconds=600, max_age_seconds=3600, clock=clock
    )
    sid = sessions.create(sub.id)
    for _ in range(11):  # busy for 55 minutes: a request every 5 minutes keeps it alive
        clock.now += 300
        assert sessions.subscriber_id(sid) == sub.id
    clock.now += 300  # one hour after sign-in: over, however busy
    assert sessions.subscriber_id(sid) is None
    idle = sessions.create(sub.id)
    clock.now += 599
    assert sessions.subscriber_id(idle) == sub.id
    clock.now += 600
    assert sessions.subscriber_id(idle) is None
    clock.now -= 600  # and it stays ended: the row is gone, not just out of date
    assert sessions.subscriber_id(idle) is None
    ended = sessions.create(sub.id)
    sessions.end(ended)
    assert sessions.subscriber_id(ended) is None
    # What the database keeps cannot be used as a cookie.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("app.db*"))
    assert sid.encode() not in raw and idle.encode() not in raw


# -- cookie flags ------------------------------------------------------------------------
async def test_cookies_are_secure_unless_a_plain_http_demo_on_loopback(
    tmp_path: Path, registry: FakeRegistry, gateway: Gateway
) -> None:
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as client:
        first = await client.get("/?lang=en")
    cookies = first.headers.get_list("set-cookie")
    assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)
    (session,) = [c for c in cookies if c.startswith(COOKIE + "=")]
    assert "SameSite=strict" in session and "Path=/" in session and "Domain" not in session
    with pytest.raises(ValueError, match="plain_http_demo"):
        settings_for(tmp_path, plain_http_demo=True)
    demo = make_app(settings_for(tmp_path, demo=True, plain_http_demo=True), registry, gateway)
    async with serving(demo, base_url="http://127.0.0.1:8080") as client:
        page = await client.get("/")
        assert "nb_session=" in page.headers["set-cookie"]
        assert "Secure" not in page.headers["set-cookie"]
    async with serving(demo, base_url="http://10.0.0.5:8080", client=("10.0.0.9", 5000)) as far:
        assert (await far.get("/")).status_code == 403


def test_the_command_line_serves_plain_http_on_loopback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--carrier-bundle", str(tmp_path), "--db", str(tmp_path / "app.db"), "--demo"]
    assert main([*args, "--plain-http", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err


# -- form tokens -------------------------------------------------------------------------
async def test_every_post_form_carries_the_sessions_token(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway
) -> None:
    async with serving(make_app(settings, registry, gateway)) as client:
        pages = [await client.get("/"), await client.get("/check")]
        token = csrf(pages[0].text)
        pages.append(
            await client.post(
                "/signin", data={"phone": "13800138000", "id_tail": "31002X", "csrf": token}
            )
        )
        await sign_in(client, gateway)
        pages += [
            await client.get("/me"),
            await client.get("/me/confirm", params={"number": 1, "scope": "previous"}),
        ]
        signed_in_token = csrf(pages[-1].text)
    assert signed_in_token != token  # a new session at sign-in, a new token
    actions = set()
    for page in pages:
        assert page.status_code == 200, page.text
        for form in parse(page.text).post_forms:
            actions.add(form["@action"])
            assert form.get("csrf") == csrf(page.text), form
    assert actions == {"/signin", "/signin/code", "/signout", "/me/revoke", "/check"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": BASE_URL}, {"referer": BASE_URL + "/me"}],
    ids=["no-origin", "same-origin", "same-referer"],
)
async def test_a_post_without_the_token_is_refused_whatever_the_headers(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway, headers: dict[str, str]
) -> None:
    async with serving(make_app(settings, registry, gateway)) as client:
        await sign_in(client, gateway)
        confirm = await client.get("/me/confirm", params={"number": 1, "scope": "previous"})
        sent = len(gateway.sent)
        async with serving(make_app(settings, registry, gateway)) as stranger:
            foreign = await form_token(stranger)  # a real token, of another session
        forms = {
            "/me/revoke": {"number_id": "1", "scope": "previous", "platforms": "acme"},
            "/signin": {"phone": "13800138000", "id_tail": "31002X"},
            "/signin/code": {"challenge": "x", "code": "123456"},
            "/check": {"phone": "13800138000", "since": "2024-01-01"},
            "/signout": {},
        }
        real = csrf(confirm.text)
        # One character changed; "0" alone would be the real token whenever it ends in "0".
        tampered = real[:-1] + ("1" if real.endswith("0") else "0")
        for path, form in forms.items():
            for token in (None, "", foreign, tampered):
                data = form if token is None else {**form, "csrf": token}
                answer = await client.post(path, data=data, headers=headers)
                assert answer.status_code == 403, (path, token)
                assert zh("err.csrf") in answer.text
        assert registry.revoked == [] and registry.checked == [] and len(gateway.sent) == sent
        assert (await client.get("/me")).status_code == 200  # still signed in
        # The page it came from, reloaded, works.
        token = csrf((await client.get("/me/confirm?number=1&scope=previous")).text)
        done = await client.post(
            "/me/revoke", data={**forms["/me/revoke"], "csrf": token}, headers=headers
        )
        assert done.status_code == 303 and len(registry.revoked) == 1


async def test_origin_and_referer_stay_a_second_layer(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway
) -> None:
    async with serving(make_app(settings, registry, gateway)) as client:
        token = await form_token(client, "/check")
        form = {"phone": "13800138000", "since": "2024-01-01", "csrf": token}
        for headers in (
            {"origin": "https://evil.example"},
            {"referer": "https://evil.example/page"},
        ):
            answer = await client.post("/check", data=form, headers=headers)
            assert answer.status_code == 403 and zh("err.forbidden") in answer.text
        assert registry.checked == []
        assert (await client.post("/check", data=form)).status_code == 200


# -- links -------------------------------------------------------------------------------
OFF_SITE_PATHS = [
    b"//evil.example/x",
    b"//evil.example",
    b"///evil.example/x",
    b"/\\evil.example",
    b"/\\/evil.example",
    b"/%2F%2Fevil.example/x",
    b"/%2fevil.example",
    b"/%5Cevil.example",
    b"/%5C%5Cevil.example",
    b"/%09/evil.example",
    b"/%0A/evil.example",
    b"/%0D%0A/evil.example",
    b"/%20/evil.example",
    b"/%E3%80%80/evil.example",
    b"/me/..//evil.example",
]


@pytest.mark.parametrize("raw", OFF_SITE_PATHS, ids=[p.decode() for p in OFF_SITE_PATHS])
@pytest.mark.parametrize("query", [b"", b"lang=en", b"text=large"])
async def test_no_page_links_off_site_whatever_the_path(
    settings: AppSettings, registry: FakeRegistry, gateway: Gateway, raw: bytes, query: bytes
) -> None:
    app = make_app(settings, registry, gateway)
    async with serving(app):
        status, location, body = await raw_get(app, raw, query)
    assert status in (303, 307, 404), status
    assert not location or not off_site(BASE_URL + "/", location), location
    urls = parse(body).urls
    assert len(urls) > 3, "the error page has links (home, language, text size)"
    assert [u for u in urls if off_site(BASE_URL + "/", u)] == []
