"""The carrier app over HTTP without a browser: a stand-in registry client and SMS gateway,
the app served through httpx's ASGI transport, and the form token a page carries."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from numbind.carrier_app.app import AppSettings, create_app
from numbind.carrier_app.i18n import Translator
from numbind.carrier_app.store import Store
from numbind.sdk import NumberView, PlatformView, Scope
from numbind.sdk import RevocationProgress as Progress

SECRET = b"0123456789abcdef0123456789abcdef"
ID_NUMBER = "11010519491231002X"
PHONE = "+8613800138000"
RID = "0b5c4a1e-8f7a-4c2e-9d3b-1a2b3c4d5e6f"
ORDER = "19a5418f-6783-4c2e-9d3b-1a2b3c4d5e6f"
zh = Translator("zh")
# Cookies are Secure unless the app is a plain-HTTP demo: the client speaks HTTPS.
BASE_URL = "https://testserver"


class FakeRegistry:
    """What the app asks the carrier SDK, answered from memory."""

    def __init__(self) -> None:
        self.revoked: list[tuple[str, Scope, list[str], str | None]] = []
        self.closed = False
        self.checked: list[tuple[str, datetime]] = []

    async def query(self, subject: str, numbers: Sequence[tuple[str, datetime]]) -> list[Any]:
        now = datetime.now(UTC)
        return [
            NumberView(
                e164,
                start,
                [PlatformView("acme", "示例网盘", "cloud-drive", True, 1, now, now, "", "")],
                timedelta(hours=24),
            )
            for e164, start in numbers
        ]

    async def revoke(
        self,
        subject: str,
        phone: str,
        tenure_start: datetime,
        scope: Scope,
        platform_ids: Sequence[str] = (),
        *,
        request_id: str | None = None,
    ) -> tuple[str, int]:
        self.revoked.append((phone, scope, list(platform_ids), request_id))
        return RID, 2

    async def revocation(self, revocation_id: str) -> list[Progress]:
        return [
            Progress("acme", "示例网盘", "cloud-drive", "DONE", 1, 1, 0, ""),
            Progress("bank", "示例银行", "bank", "REJECTED", 1, 0, 1, "account frozen", (ORDER,)),
        ]

    async def check_reassigned(self, queries: Sequence[tuple[str, datetime]]) -> list[str]:
        self.checked.extend(queries)
        return ["NOT_REASSIGNED" for _ in queries]

    async def close(self) -> None:
        self.closed = True


class Gateway:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    async def __call__(self, e164: str, code: str) -> None:
        if self.fail:
            raise RuntimeError("SMS gateway down")
        self.sent.append((e164, code))


def settings_for(tmp_path: Path, **kw: Any) -> AppSettings:
    Store(tmp_path / "app.db", SECRET).enroll(
        ID_NUMBER, PHONE, datetime.now(UTC) - timedelta(days=40)
    )
    return AppSettings(
        carrier_bundle=tmp_path / "unused", db=tmp_path / "app.db", secret=SECRET, **kw
    )


def make_app(settings: AppSettings, registry: FakeRegistry, gateway: Gateway) -> FastAPI:
    return create_app(settings, send_code=gateway, client_factory=lambda _: registry)  # type: ignore[arg-type,return-value]


@asynccontextmanager
async def serving(
    app: FastAPI, *, base_url: str = BASE_URL, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, as a browser-less HTTP client at ``client`` sees it."""
    transport = httpx.ASGITransport(app=app, client=client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base_url) as http,
    ):
        yield http


_CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


def csrf(html: str) -> str:
    """The form token of a page (every POST form carries the same one), or "" if none (so
    the security tests fail for their own reason on an app without tokens)."""
    found = _CSRF_RE.search(html)
    return found.group(1) if found else ""


async def form_token(client: httpx.AsyncClient, path: str = "/") -> str:
    """Open a page (which gives the browser its session cookie) and read its form token."""
    return csrf((await client.get(path)).text)


async def sign_in(client: httpx.AsyncClient, gateway: Gateway) -> httpx.Response:
    """Sign in through both forms; returns the answer to the code (a redirect to /me)."""
    token = await form_token(client)
    page = await client.post(
        "/signin", data={"phone": "13800138000", "id_tail": "31002x", "csrf": token}
    )
    assert page.status_code == 200, page.text
    to, code = gateway.sent[-1]
    assert to == PHONE
    assert code not in page.text  # outside demo mode the code goes by SMS only
    challenge = page.text.split('name="challenge" value="', 1)[1].split('"', 1)[0]
    done = await client.post(
        "/signin/code", data={"challenge": challenge, "code": code, "csrf": csrf(page.text)}
    )
    assert done.status_code == 303 and done.headers["location"] == "/me"
    return done
