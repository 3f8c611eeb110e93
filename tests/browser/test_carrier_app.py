"""The carrier app's flows in headless Chromium, at 390×844 and at 1280×800: sign-in, the
one list that is also the progress list after 一键解绑, the refusal's next steps, the retry
of an overdue app, the page without JavaScript, the reassigned check, a registry that is
down. Screenshots go to each test's tmp dir (shots/)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from itsdangerous import BadSignature, URLSafeTimedSerializer
from numbind.carrier_app.app import AppSettings
from numbind.carrier_app.i18n import CST
from numbind.carrier_app.store import Store
from numbind.registry.testing import running_registry
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser._checks import assert_contrast, assert_no_sideways_scroll
from tests.browser.conftest import (
    FINAL,
    ID_NUMBER,
    PHONE,
    PREVIOUS,
    QUIET_ID,
    QUIET_PHONE,
    REASON,
    REISSUED_PHONE,
    SECRET,
    TAIL,
    AppServer,
    Stack,
    ask_code,
    days_ago,
    shot,
    sign_in,
)

pytestmark = pytest.mark.browser
REFERENCE = re.compile(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}")


def previous(page: Page) -> Locator:
    return page.locator("article.number").first.locator("section[data-group=previous]")


async def states(page: Page) -> dict[str, str]:
    rows = previous(page).locator("li.app")
    pairs = await rows.evaluate_all(
        "items => items.map(li => [li.dataset.platform, li.dataset.state])"
    )
    return dict(pairs)


async def test_sign_in_and_see_the_previous_holders_apps(
    stack: Stack, page: Page, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="numbind.carrier_app")
    await sign_in(page, stack.url)
    # The demo code went to the server log too, with the number masked.
    assert "DEMO sign-in code for 138****8000" in caplog.text
    assert PHONE not in caplog.text and TAIL not in caplog.text
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "nb_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # An opaque random id, nothing signed: the session itself lives on the server.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie["value"])
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(SECRET, salt="numbind-carrier-session").loads(cookie["value"])
    await expect(page.get_by_role("heading", name="一证通查", level=1)).to_be_visible()
    group = previous(page)
    tenure = days_ago(40).astimezone(CST)
    await expect(group).to_contain_text(
        f"在您于 {tenure.year}年{tenure.month}月{tenure.day}日 获得此号码之前绑定"
    )
    names = await group.locator(".app-name").all_inner_texts()
    assert names == sorted(PREVIOUS)  # one order, by name
    await expect(group.locator("[data-role=count]")).to_have_text(str(len(PREVIOUS)))
    await expect(group.locator("[data-role=lead]")).to_have_text(
        "这些应用仍绑定着前任机主的账号，您可以一键解绑。"
    )
    await expect(group.locator("[data-platform=t-drive]")).to_contain_text("2 个账号")
    # The promise is made before anything is asked, from the registry's deadline.
    await expect(group.locator(".hint").first).to_contain_text("最长不超过 3 秒")
    mine = page.locator("article.number").first.locator("section[data-group=mine]")
    assert await mine.locator(".app-name").all_inner_texts() == ["示例商城"]
    await expect(
        page.get_by_role("button", name=re.compile(r"一键解绑（5 个应用）"))
    ).to_be_visible()
    assert PHONE not in await page.content()
    await assert_no_sideways_scroll(page)
    await assert_contrast(page)
    await shot(page, tmp_path, "signed-in")


async def test_one_click_unbind_the_list_is_the_progress_list_and_the_retry_names_apps(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await sign_in(page, stack.url)
    await page.get_by_role("button", name=re.compile("一键解绑")).click()
    dialog = page.get_by_role("dialog", name="确认解绑")
    await expect(dialog).to_be_visible()
    for name in PREVIOUS:
        await expect(dialog).to_contain_text(name)
    await expect(dialog).to_contain_text("通常几秒内完成，最长不超过 3 秒")
    await assert_contrast(page, within="dialog[open]")
    await shot(page, tmp_path, "confirm-dialog")
    await dialog.get_by_role("button", name="取消").click()
    await expect(dialog).to_be_hidden()
    await page.get_by_role("button", name=re.compile("一键解绑")).click()
    await dialog.get_by_role("button", name="确认解绑").click()
    await page.wait_for_url(re.compile(r"/me#n-\d+$"))  # nothing about it in the query

    # The banner counts apps (5), not orders (6: 示例网盘 holds two accounts).
    banner = page.get_by_role("status").filter(has_text="已提交解绑请求")
    await expect(banner).to_have_text(re.compile(r"正在通知 5 个应用。通常几秒内完成"))
    await page.evaluate("window.__sameDocument = true")  # from here on, no reload
    group = previous(page)
    await expect(group.locator("[data-role=lead]")).to_contain_text("正在解绑", timeout=5_000)
    for pid, state in FINAL.items():
        await expect(group.locator(f"li[data-platform={pid}]")).to_have_attribute(
            "data-state", state, timeout=20_000
        )
    assert await page.evaluate("window.__sameDocument === true")
    # Settled: the banner is gone, counts and lead are live, each app listed once.
    await expect(banner).to_be_hidden()
    await expect(group.locator("[data-role=count]")).to_have_text("2")  # refused + overdue
    lead = group.locator("[data-role=lead]")
    await expect(lead).to_have_text("处理结果：已解绑 3 个 · 拒绝 1 个 · 超时未确认 1 个。")
    await expect(lead).to_have_class(re.compile("tone-warn"))  # not green: some remain
    for pid in FINAL:
        assert await page.locator(f"li[data-platform={pid}]").count() == 1
    # The refusal: the app's reason, and what to do with a reference it can look up.
    loan = group.locator("li[data-platform=t-loan]")
    await expect(loan).to_contain_text(REASON)
    await expect(loan).to_contain_text("联系示例小贷客服")
    await expect(loan).to_contain_text("向示例移动投诉")
    assert REFERENCE.search(await loan.inner_text())
    await expect(group.locator("li[data-platform=t-travel]")).to_contain_text("未在期限内确认")
    # The retry names the overdue app only; the one that refused is not asked again.
    retry = group.get_by_role("button", name="再次通知 示例旅行")
    await expect(retry).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("一键解绑"))).to_have_count(0)
    await assert_no_sideways_scroll(page)
    await assert_contrast(page)
    await shot(page, tmp_path, "settled")

    # A reload says the same, with nothing in the URL to replay.
    await page.reload()
    assert "?" not in page.url
    assert await states(page) == FINAL
    await expect(page.get_by_role("status").filter(has_text="已提交解绑请求")).to_have_count(0)
    await expect(previous(page).locator("[data-role=count]")).to_have_text("2")

    await previous(page).get_by_role("button", name="再次通知 示例旅行").click()
    await expect(dialog).to_contain_text("再次通知 示例旅行")
    assert "示例小贷" not in await dialog.inner_text()
    await dialog.get_by_role("button", name="再次通知").click()
    await page.wait_for_url(re.compile(r"/me#n-\d+$"))
    travel = previous(page).locator("li[data-platform=t-travel]")
    await expect(travel).to_have_attribute("data-state", re.compile("PENDING|DELIVERED"))
    await expect(page.get_by_role("status").filter(has_text="正在通知 1 个应用")).to_be_visible()
    # Offline still: it goes overdue again, and the retry comes back.
    await expect(travel).to_have_attribute("data-state", "OVERDUE", timeout=15_000)
    await expect(previous(page).get_by_role("button", name="再次通知 示例旅行")).to_be_visible()
    await shot(page, tmp_path, "retried")


async def test_unbinding_an_app_of_my_own(stack: Stack, page: Page, tmp_path: Path) -> None:
    await sign_in(page, stack.url)
    mine = page.locator("article.number").first.locator("section[data-group=mine]")
    await mine.get_by_role("button", name="解绑 示例商城").click()
    dialog = page.get_by_role("dialog", name="确认解绑")
    await expect(dialog).to_contain_text("包括您本人的账号")
    await dialog.get_by_role("button", name="确认解绑").click()
    await page.wait_for_url(re.compile(r"/me#n-\d+$"))
    shop = mine.locator("li[data-platform=t-shop]")
    await expect(shop).to_have_attribute("data-state", "DONE", timeout=15_000)
    await expect(shop).to_contain_text("1 个账号已解绑")
    await expect(mine.locator("[data-role=count]")).to_have_text("0")
    await shot(page, tmp_path, "own-unbound")


async def test_a_subscriber_with_nothing_bound_reads_one_plain_sentence(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await sign_in(page, stack.url, QUIET_PHONE, QUIET_ID[-6:])
    card = page.locator("article.number")
    await expect(card.get_by_test_id("empty-state")).to_have_text(
        re.compile("没有任何应用绑定此号码，无需处理。")
    )
    assert "仍绑定" not in await page.locator("main").inner_text()
    await assert_contrast(page)
    await shot(page, tmp_path, "nothing-bound")


async def test_five_wrong_codes_end_the_code_and_only_delay_the_next(
    stack: Stack, page: Page, tmp_path: Path
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
    await expect(alert).to_have_text("验证码错误次数过多，此验证码已失效，请重新获取。")
    await assert_contrast(page)
    await shot(page, tmp_path, "code-spent")
    # A new code at once waits a few seconds (the number backs off), never 15 minutes.
    await page.get_by_label("手机号码").fill(PHONE)
    await page.get_by_label("证件号码后六位").fill(TAIL)
    await page.get_by_role("button", name="获取验证码").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile(r"请 \d+ 秒后再试"))
    await expect(page.get_by_test_id("demo-code")).to_have_count(0)
    await expect(page.get_by_label("手机号码")).to_have_value(PHONE)
    wait = int(re.findall(r"\d+", await page.get_by_role("alert").inner_text())[0])
    assert wait <= 60
    await asyncio.sleep(wait)
    await sign_in(page, stack.url)


async def test_without_javascript_a_confirmation_page_stands_in(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, stack.url)
        await page.get_by_role("button", name=re.compile("一键解绑")).click()
        await page.wait_for_url(re.compile(r"/me/confirm\?"))
        await expect(page.get_by_role("heading", name="确认解绑")).to_be_visible()
        await expect(page.get_by_text("示例小贷", exact=False)).to_be_visible()
        await shot(page, tmp_path, "confirm-page")
        fields = {
            name: await page.locator(f"form[action='/me/revoke'] input[name={name}]").input_value()
            for name in ("number_id", "scope", "platforms", "request_id", "csrf")
        }
        assert set(fields["platforms"].split(",")) == set(FINAL)
        await page.get_by_role("button", name="确认解绑").click()
        await page.wait_for_url(re.compile(r"/me#n-\d+$"))
        # The same form sent again (a resubmit) is answered, not repeated.
        form: dict[str, str | float | bool] = dict(fields)  # the type post() takes
        again = await page.request.post(
            stack.url + "/me/revoke",
            form=form,
            headers={"Origin": stack.url},
            max_redirects=0,
        )
        assert again.headers["location"].startswith("/me#n-")
        for _ in range(40):  # without polling, a reload shows where things stand
            await page.reload()
            now = await states(page)
            if all(s in ("DONE", "REJECTED", "OVERDUE") for s in now.values()):
                break
            await asyncio.sleep(0.5)
        assert now == FINAL
        assert await page.locator("[data-role=banner]").count() == 0
        assert await page.locator("li[data-platform=t-bank]").count() == 1  # not asked twice
    finally:
        await context.close()


async def test_reassigned_check_for_callers(stack: Stack, page: Page, tmp_path: Path) -> None:
    await page.goto(stack.url + "/check")
    await expect(page.get_by_text("运营商号码查询服务")).to_be_visible()
    await page.get_by_label("要查询的号码").fill(REISSUED_PHONE)
    await page.get_by_label("自此日期以来").fill(f"{days_ago(100):%Y-%m-%d}")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("是")
    await assert_contrast(page)
    await shot(page, tmp_path, "reassigned-yes")
    await page.get_by_label("自此日期以来").fill(f"{days_ago(10):%Y-%m-%d}")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("否")
    await page.get_by_label("要查询的号码").fill("13900000000")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_test_id("check-answer")).to_have_text("无数据")
    # A bad number keeps both fields as typed.
    await page.get_by_label("要查询的号码").fill("12")
    await page.get_by_role("button", name="查询").click()
    await expect(page.get_by_role("alert")).to_have_text("请输入有效的手机号码。")
    await expect(page.get_by_label("要查询的号码")).to_have_value("12")
    await expect(page.get_by_label("自此日期以来")).to_have_value(f"{days_ago(10):%Y-%m-%d}")


async def test_registry_down_reads_as_plain_words(tmp_path: Path, page: Page) -> None:
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
        plain_http_demo=True,
        registry_timeout_seconds=3.0,
    )
    async with AppServer(settings) as app:
        await sign_in(page, app.url)
        await expect(page.get_by_role("alert")).to_have_text("服务暂时不可用，请稍后再试。")
        content = await page.content()
        assert "Traceback" not in content and "grpc" not in content.lower()
        await assert_contrast(page)
        await shot(page, tmp_path, "registry-down")
