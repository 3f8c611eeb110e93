"""The carrier app in Debian's headless Chromium (Playwright), against a real registry.

Each test gets a fresh stack: an in-process registry (orders go overdue after 3 s), sample
platforms consuming their feeds (one rejects with a reason, one is slow, one is offline),
the subscriber store with a reissued number, and the app under uvicorn on a free port.
Screenshots land in test-results/<test name>/.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from itsdangerous import URLSafeTimedSerializer
from numbind.carrier_app.app import AppSettings, create_app
from numbind.carrier_app.i18n import CST
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

pytestmark = pytest.mark.browser

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
RESULTS = Path(__file__).resolve().parents[2] / "test-results"

PHONE = "13800138000"
ID_NUMBER = "110105198808081234"
TAIL = ID_NUMBER[-6:]
REASON = "该账户尚有未结清的借款"
SECRET = b"k" * 32
# (id, display name, category, behaviour)
APPS = (
    ("t-drive", "示例网盘", "cloud-drive", "normal"),
    ("t-loan", "示例小贷", "lender", "reject"),
    ("t-bank", "示例银行", "bank", "slow"),
    ("t-travel", "示例旅行", "travel", "offline"),
    ("t-shop", "示例商城", "e-commerce", "normal"),
)
PREVIOUS = ("示例网盘", "示例小贷", "示例银行", "示例旅行")
FINAL = {"示例网盘": "DONE", "示例小贷": "REJECTED", "示例银行": "DONE", "示例旅行": "OVERDUE"}


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
        # The previous holder's tenure, a cancellation, and the reissue 40 days ago, reported
        # before these apps joined numbind: their stale bindings are still there.
        await carrier.report(
            [
                LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(1500)),
                LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(200)),
                LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(40)),
            ]
        )
    for i, (app_id, _, _, _) in enumerate(APPS[:4]):
        async with PlatformClient(bundles[app_id]) as client:
            await client.publish([Row(PHONE, f"old-{i}", days_ago(400 + 100 * i))])
    async with PlatformClient(bundles["t-shop"]) as client:
        await client.publish([Row(PHONE, "mine", days_ago(10))])
    tasks = [
        asyncio.create_task(worker(bundles[a], tmp / f"cursor-{a}", how))
        for a, _, _, how in APPS
        if how != "offline"
    ]
    return cm, tasks


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_registry(tmp_path / "data", order_deadline_seconds=3.0) as reg:
        cm, tasks = await seed(reg, tmp_path)
        store = Store(tmp_path / "carrier-app.db", SECRET)
        store.enroll(ID_NUMBER, "+86" + PHONE, days_ago(40))
        settings = AppSettings(
            carrier_bundle=cm.directory, db=tmp_path / "carrier-app.db", secret=SECRET, demo=True
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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    p = await context.new_page()
    try:
        yield p
    finally:
        await context.close()


async def shot(page: Page, request: pytest.FixtureRequest, name: str) -> Path:
    folder = RESULTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def ask_code(page: Page, url: str, *, english: bool = False) -> str:
    await page.goto(url + "/")
    await page.get_by_label("Mobile number" if english else "手机号码").fill(PHONE)
    await page.get_by_label(
        "Last six characters of your ID number" if english else "证件号码后六位"
    ).fill(TAIL)
    await page.get_by_role("button", name="Send code" if english else "获取验证码").click()
    banner = page.get_by_test_id("demo-code")
    await expect(banner).to_be_visible()
    found = re.search(r"\d{6}", await banner.inner_text())
    assert found, "the demo banner shows the code"
    return found.group(0)


async def sign_in(page: Page, url: str, *, english: bool = False) -> None:
    code = await ask_code(page, url, english=english)
    await page.get_by_label("Code" if english else "验证码", exact=True).fill(code)
    await page.get_by_role("button", name="Sign in" if english else "登录", exact=True).click()
    await page.wait_for_url(re.compile(r"/me$"))


async def test_sign_in_with_demo_code_and_see_previous_holders_platforms(
    stack: Stack, page: Page, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="numbind.carrier_app")
    await sign_in(page, stack.url)
    # The demo code went to the server log too, with the number masked.
    assert "DEMO sign-in code for 138****8000" in caplog.text
    assert PHONE not in caplog.text and TAIL not in caplog.text
    # The session cookie: HttpOnly, SameSite=Strict, signed, and only a subscriber id.
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "nb_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    sid = URLSafeTimedSerializer(SECRET, salt="numbind-carrier-session").loads(cookie["value"])
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    await expect(page.get_by_role("heading", name="一证通查", level=1)).to_be_visible()
    await expect(page.get_by_role("heading", name="138****8000")).to_be_visible()
    previous = page.locator("section.group-previous")
    await expect(previous.get_by_role("heading")).to_contain_text("前任机主的绑定")
    tenure = days_ago(40).astimezone(CST)
    await expect(previous).to_contain_text(
        f"在您于 {tenure.year}年{tenure.month}月{tenure.day}日 获得此号码之前绑定"
    )
    names = await previous.locator(".platform-name").all_inner_texts()
    assert sorted(names) == sorted(PREVIOUS)
    await expect(previous.locator("[data-platform=t-loan]")).to_contain_text("贷款")
    await expect(previous.locator("[data-platform=t-loan]")).to_contain_text("1 个账号")
    mine = page.locator("section.group-mine")
    assert await mine.locator(".platform-name").all_inner_texts() == ["示例商城"]
    await expect(
        page.get_by_role("button", name=re.compile(r"一键解绑（4 个应用）"))
    ).to_be_visible()
    # The page never shows the full number.
    assert PHONE not in await page.content()
    await shot(page, request, "signed-in")


async def test_one_click_unbind_then_every_platform_reaches_a_final_state(
    stack: Stack, page: Page, request: pytest.FixtureRequest
) -> None:
    await sign_in(page, stack.url)
    await page.get_by_role("button", name=re.compile("一键解绑")).click()
    dialog = page.get_by_role("dialog", name="确认解绑")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("示例小贷")
    await shot(page, request, "confirm-dialog")
    # Cancel first: nothing happens.
    await dialog.get_by_role("button", name="取消").click()
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name=re.compile("一键解绑")).click()
    await dialog.get_by_role("button", name="确认解绑").click()
    await page.wait_for_url(re.compile(r"started="))
    await expect(page.get_by_role("status").filter(has_text="已提交解绑请求")).to_be_visible()
    # From here the list must move by itself: mark this document to prove no reload.
    await page.evaluate("window.__sameDocument = true")
    progress = page.locator("section.progress").first
    for name, state in FINAL.items():
        step = progress.locator("li.step", has_text=name)
        await expect(step).to_have_attribute("data-state", state, timeout=20_000)
    await expect(progress.locator("li.step", has_text="示例小贷")).to_contain_text(REASON)
    await expect(progress.locator("li.step", has_text="示例旅行")).to_contain_text("已超时")
    assert await page.evaluate("window.__sameDocument === true")
    await shot(page, request, "progress-final")

    # It survives a reload: the app kept the revocation id.
    await page.reload()
    progress = page.locator("section.progress").first
    for name, state in FINAL.items():
        await expect(progress.locator("li.step", has_text=name)).to_have_attribute(
            "data-state", state
        )
    # Unbound platforms are gone from the list; the refused and the overdue remain.
    previous = page.locator("section.group-previous")
    assert sorted(await previous.locator(".platform-name").all_inner_texts()) == [
        "示例小贷",
        "示例旅行",
    ]

    # Per-platform unbinding of the holder's own binding.
    await page.get_by_role("button", name="解绑 示例商城").click()
    await expect(dialog).to_contain_text("示例商城")
    await dialog.get_by_role("button", name="确认解绑").click()
    await page.wait_for_url(re.compile(r"started="))
    newest = page.locator("section.progress").first
    await expect(newest.locator("li.step", has_text="示例商城")).to_have_attribute(
        "data-state", "DONE", timeout=15_000
    )
    await shot(page, request, "after-own-unbind")


async def test_five_wrong_codes_lock_the_number(
    stack: Stack, page: Page, request: pytest.FixtureRequest
) -> None:
    code = await ask_code(page, stack.url)
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1):
        await page.get_by_label("验证码", exact=True).fill(bad)
        await page.get_by_role("button", name="登录", exact=True).click()
        await expect(page.get_by_role("alert")).to_have_text(f"验证码不正确，还可尝试 {left} 次。")
    await page.get_by_label("验证码", exact=True).fill(bad)
    await page.get_by_role("button", name="登录", exact=True).click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("该号码已锁定 15 分钟")
    await expect(alert).to_contain_text(re.compile(r"请于 \d\d:\d\d 后再试"))
    await shot(page, request, "locked")
    # Even the right ID cannot get a new code now.
    await page.get_by_label("手机号码").fill(PHONE)
    await page.get_by_label("证件号码后六位").fill(TAIL)
    await page.get_by_role("button", name="获取验证码").click()
    await expect(page.get_by_role("alert")).to_contain_text("该号码已锁定")
    await expect(page.get_by_test_id("demo-code")).to_have_count(0)


async def test_english_switch(stack: Stack, page: Page, request: pytest.FixtureRequest) -> None:
    await page.goto(stack.url + "/")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await page.get_by_role("link", name="Switch to English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    # The choice sticks (cookie) through the sign-in and onto the bindings page.
    await sign_in(page, stack.url, english=True)
    await expect(page.get_by_role("heading", name="All numbers under my ID")).to_be_visible()
    await expect(page.locator("section.group-previous")).to_contain_text("Previous holder's")
    await expect(page.locator("section.group-mine")).to_contain_text("Yours")
    await expect(page.get_by_role("button", name="Unbind all (4 apps)")).to_be_visible()
    await shot(page, request, "english")
    await page.get_by_role("link", name="切换到简体中文").click()
    await expect(page.get_by_role("heading", name="一证通查", level=1)).to_be_visible()


async def test_mobile_viewport(
    stack: Stack, browser: Browser, request: pytest.FixtureRequest
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    try:
        await page.goto(stack.url + "/")
        await shot(page, request, "mobile-sign-in")
        await sign_in(page, stack.url)
        button = page.get_by_role("button", name=re.compile("一键解绑"))
        await expect(button).to_be_visible()
        box = await button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        scroll_width = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 390, f"page scrolls sideways: {scroll_width}px"
        await shot(page, request, "mobile-bindings")
        await button.click()
        dialog = page.get_by_role("dialog", name="确认解绑")
        await expect(dialog).to_be_visible()
        dbox = await dialog.bounding_box()
        assert dbox is not None and dbox["width"] <= 390
        await shot(page, request, "mobile-dialog")
        await dialog.get_by_role("button", name="确认解绑").click()
        progress = page.locator("section.progress").first
        await expect(progress.locator("li.step", has_text="示例网盘")).to_have_attribute(
            "data-state", "DONE", timeout=15_000
        )
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await shot(page, request, "mobile-progress")
    finally:
        await context.close()


async def test_without_javascript_a_confirmation_page_stands_in(
    stack: Stack, browser: Browser, request: pytest.FixtureRequest
) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, stack.url)
        await page.get_by_role("button", name=re.compile("一键解绑")).click()
        await page.wait_for_url(re.compile(r"/me/confirm\?"))
        await expect(page.get_by_role("heading", name="确认解绑")).to_be_visible()
        await expect(page.get_by_text("示例小贷", exact=False)).to_be_visible()
        await shot(page, request, "confirm-page")
        fields = {
            name: await page.locator(f"form input[name={name}]").input_value()
            for name in ("number_id", "scope", "platform_id", "request_id")
        }
        await page.get_by_role("button", name="确认解绑").click()
        await page.wait_for_url(re.compile(r"started="))
        first = re.search(r"started=([0-9a-f-]+)", page.url)
        # The same form sent again (a resubmit) is answered with the same revocation.
        again = await page.request.post(
            stack.url + "/me/revoke",
            form=fields,
            headers={"Origin": stack.url},
            max_redirects=0,
        )
        assert first is not None and f"started={first.group(1)}" in again.headers["location"]
        # Without polling, a reload shows where things stand.
        for _ in range(40):
            await page.reload()
            states = await page.locator("section.progress li.step").evaluate_all(
                "items => items.map(li => li.dataset.state)"
            )
            if len(states) == 4 and all(s in ("DONE", "REJECTED", "OVERDUE") for s in states):
                break
            await asyncio.sleep(0.5)
        assert sorted(states) == ["DONE", "DONE", "OVERDUE", "REJECTED"]
    finally:
        await context.close()


async def test_reassigned_check_for_callers(
    stack: Stack, page: Page, request: pytest.FixtureRequest
) -> None:
    await page.goto(stack.url + "/check")
    await expect(page.get_by_text("运营商号码查询服务")).to_be_visible()
    await page.get_by_label("要查询的号码").fill(PHONE)
    await page.get_by_label("自此日期以来").fill(f"{days_ago(100):%Y-%m-%d}")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("是")
    await shot(page, request, "reassigned-yes")
    await page.get_by_label("自此日期以来").fill(f"{days_ago(10):%Y-%m-%d}")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("否")
    await page.get_by_label("要查询的号码").fill("13900000000")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("无数据")


async def test_registry_down_reads_as_plain_words(
    tmp_path: Path, page: Page, request: pytest.FixtureRequest
) -> None:
    async with running_registry(tmp_path / "data") as reg:
        cm = reg.add_carrier("cm", "示例移动")
    # The registry has stopped: the bundle still names its address, where nobody answers.
    store = Store(tmp_path / "app.db", SECRET)
    store.enroll(ID_NUMBER, "+86" + PHONE, days_ago(40))
    settings = AppSettings(
        carrier_bundle=cm.directory,
        db=tmp_path / "app.db",
        secret=SECRET,
        demo=True,
        registry_timeout_seconds=3.0,
    )
    async with AppServer(settings) as app:
        await sign_in(page, app.url)
        await expect(page.get_by_role("alert")).to_have_text("服务暂时不可用，请稍后再试。")
        content = await page.content()
        assert "Traceback" not in content and "grpc" not in content.lower()
        await shot(page, request, "registry-down")
