"""The carrier app in Debian's headless Chromium (Playwright), against a real registry.

Each test gets a fresh stack: an in-process registry (orders go overdue after 3 s), sample
platforms consuming their feeds (one refuses with a reason, one is slow, one is offline,
one has a 64-character name with no space in it), a subscriber store with a reissued
number and a subscriber with nothing bound, and the app under uvicorn on a free port, and a
fresh browser context; one Chromium serves the whole run. Screenshots land in the test's
own tmp dir (``shots/``). Without Debian's chromium the tests skip, except under CI=true,
where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from numbind.carrier_app.app import AppSettings, create_app
from numbind.carrier_app.store import Store
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import (
    AckOutcome,
    CarrierClient,
    EventFeed,
    EventKind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Row,
)
from numbind.sdk.channel import secure_channel
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = "13800138000"
# A number whose reissue the carrier did report (the reassigned-since check asks about it).
REISSUED_PHONE = "13600136000"
ID_NUMBER = "110105198808081234"
TAIL = ID_NUMBER[-6:]
QUIET_PHONE = "13700137000"
QUIET_ID = "110105199001025678"
REASON = "该账户尚有未结清的借款"
SECRET = b"k" * 32
LONG_NAME = "SuperLongApplicationNameWithoutAnySpaceThatMustWrapOnSmallPhones64"[:64]
# (id, display name, category, behaviour, accounts bound by the previous holder)
APPS = (
    ("t-drive", "示例网盘", "cloud-drive", "normal", 2),
    ("t-loan", "示例小贷", "lender", "reject", 1),
    ("t-bank", "示例银行", "bank", "slow", 1),
    ("t-travel", "示例旅行", "travel", "offline", 1),
    ("t-long", LONG_NAME, "video", "normal", 1),
    ("t-shop", "示例商城", "e-commerce", "normal", 0),
)
PREVIOUS = ("示例网盘", "示例小贷", "示例银行", "示例旅行", LONG_NAME)
FINAL = {
    "t-drive": "DONE",
    "t-loan": "REJECTED",
    "t-bank": "DONE",
    "t-travel": "OVERDUE",
    "t-long": "DONE",
}
CONTENT = (*PREVIOUS, "示例商城", REASON, "138****8000", "137****7000")
VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 800)}


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


class AppServer:
    """The carrier app under uvicorn in its own thread (its own event loop)."""

    def __init__(self, settings: AppSettings) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings), log_level="warning", access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    async def __aenter__(self) -> AppServer:
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            await asyncio.sleep(0.05)
        raise RuntimeError("carrier app did not start")

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 10)
        self._sock.close()


@dataclass
class Stack:
    url: str
    registry: RunningRegistry
    tmp: Path
    workers: list[asyncio.Task[None]] = field(default_factory=list)


async def worker(bundle: Bundle, cursor: Path, behaviour: str) -> None:
    async with secure_channel(bundle) as channel:
        async for event in EventFeed(channel, cursor).events():
            if event.kind == EventKind.NUMBER_DEACTIVATED:
                await event.ack()
            elif behaviour == "reject":
                await asyncio.sleep(0.3)
                await event.ack(AckOutcome.REJECTED, REASON)
            else:
                await asyncio.sleep(1.5 if behaviour == "slow" else 0.2)
                await event.ack(AckOutcome.UNBOUND)


async def seed(reg: RunningRegistry, tmp: Path) -> tuple[Bundle, list[asyncio.Task[None]]]:
    cm = reg.add_carrier("cm", "示例移动")
    bundles = {a[0]: reg.add_platform(a[0], a[1], a[2]) for a in APPS}
    async with CarrierClient(cm) as carrier:
        # The carrier joined numbind after reselling PHONE 40 days ago: it reports the new
        # holder's tenure, not the reissue, so the previous holder's bindings are still
        # there. (A reported REISSUED revokes them, and any published later on arrival.)
        await carrier.report(
            [
                LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(40)),
                LifecycleReport(REISSUED_PHONE, Lifecycle.ISSUED, days_ago(1500)),
                LifecycleReport(REISSUED_PHONE, Lifecycle.REISSUED, days_ago(40)),
                LifecycleReport(QUIET_PHONE, Lifecycle.ISSUED, days_ago(300)),
            ]
        )
    for i, (app_id, _, _, _, accounts) in enumerate(APPS):
        rows = [Row(PHONE, f"old-{i}-{k}", days_ago(400 + 100 * i + k)) for k in range(accounts)]
        if rows:
            async with PlatformClient(bundles[app_id]) as client:
                await client.publish(rows)
    async with PlatformClient(bundles["t-shop"]) as client:
        await client.publish([Row(PHONE, "mine", days_ago(10))])
    tasks = [
        asyncio.create_task(worker(bundles[a], tmp / f"cursor-{a}", how))
        for a, _, _, how, _ in APPS
        if how != "offline"
    ]
    return cm, tasks


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run in the session's event loop, where the one Chromium lives
    (Playwright's objects belong to the loop that made them)."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if pytest_asyncio.is_async_test(item) and item.path.is_relative_to(HERE):
            item.add_marker(session_loop, append=False)


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_registry(tmp_path / "data", order_deadline_seconds=3.0) as reg:
        cm, tasks = await seed(reg, tmp_path)
        store = Store(tmp_path / "carrier-app.db", SECRET)
        store.enroll(ID_NUMBER, "+86" + PHONE, days_ago(40))
        store.enroll(QUIET_ID, "+86" + QUIET_PHONE, days_ago(300))
        settings = AppSettings(
            carrier_bundle=cm.directory,
            db=tmp_path / "carrier-app.db",
            secret=SECRET,
            demo=True,
            # Plain HTTP on 127.0.0.1: the one case where cookies go without Secure.
            plain_http_demo=True,
            carrier_name_en="Demo Mobile",
        )
        try:
            async with AppServer(settings) as app:
                yield Stack(app.url, reg, tmp_path, tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def require_chromium() -> None:
    """Skip without Debian's chromium, except under CI=true, where that is a failure."""
    if not os.path.exists(CHROMIUM):
        reason = f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the run (a launch is seconds on a loaded machine); each test still
    gets a fresh context and page of its own."""
    require_chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> tuple[int, int]:
    return VIEWPORTS[request.param]


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, viewport: tuple[int, int]) -> AsyncIterator[Page]:
    width, height = viewport
    phone = width < 600
    context = await browser.new_context(
        viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone
    )
    p = await context.new_page()
    try:
        yield p
    finally:
        await context.close()


async def shot(page: Page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's tmp dir (shots/NAME-WIDTH.png)."""
    folder = tmp_path / "shots"
    folder.mkdir(exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    safe = re.sub(r"[^\w.-]+", "_", name)
    path = folder / f"{safe}-{width}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def ask_code(page: Page, url: str, phone: str = PHONE, tail: str = TAIL) -> str:
    await page.goto(url + "/")  # in the language chosen before (a cookie), if any
    english = await page.locator("html").get_attribute("lang") == "en"
    await page.get_by_label("Mobile number" if english else "手机号码").fill(phone)
    await page.get_by_label(
        "Last six characters of your ID number" if english else "证件号码后六位"
    ).fill(tail)
    await page.get_by_role("button", name="Send code" if english else "获取验证码").click()
    banner = page.get_by_test_id("demo-code")
    await expect(banner).to_be_visible()
    found = re.search(r"\d{6}", await banner.inner_text())
    assert found, "the demo banner shows the code"
    return found.group(0)


async def sign_in(page: Page, url: str, phone: str = PHONE, tail: str = TAIL) -> None:
    code = await ask_code(page, url, phone, tail)
    english = await page.locator("html").get_attribute("lang") == "en"
    await page.get_by_label("Code" if english else "验证码", exact=True).fill(code)
    await page.get_by_role("button", name="Sign in" if english else "登录", exact=True).click()
    await page.wait_for_url(re.compile(r"/me$"))
