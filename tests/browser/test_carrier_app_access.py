"""The carrier app for everyone, in headless Chromium at 390×844 and 1280×800: contrast of
at least 4.5:1 on every visible text element of every page (computed styles), no text under
14 px, a remembered larger-text mode (适老化) with nothing under 18 px, a 64-character name
that wraps instead of widening the page, one date format per language, and an English page
with no Chinese chrome."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser._checks import (
    assert_contrast,
    assert_font_at_least,
    assert_no_sideways_scroll,
    chinese_in_chrome,
)
from tests.browser.conftest import (
    CONTENT,
    FINAL,
    LONG_NAME,
    PHONE,
    TAIL,
    Stack,
    ask_code,
    shot,
    sign_in,
)

pytestmark = pytest.mark.browser


async def unbind_all_and_settle(page: Page, english: bool = False) -> None:
    await page.get_by_role(
        "button", name=re.compile("Unbind all" if english else "一键解绑")
    ).click()
    await (
        page.get_by_role("dialog")
        .get_by_role("button", name="Unbind" if english else "确认解绑", exact=True)
        .click()
    )
    await page.wait_for_url(re.compile(r"/me#n-\d+$"))
    for pid, state in FINAL.items():
        await expect(page.locator(f"li[data-platform={pid}]").first).to_have_attribute(
            "data-state", state, timeout=20_000
        )


async def test_every_page_meets_contrast_and_minimum_size(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    checked = 0
    await page.goto(stack.url + "/")
    checked += await assert_contrast(page)
    await assert_font_at_least(page, 14)
    # An error keeps what was typed in both fields.
    await page.get_by_label("手机号码").fill("12345")
    await page.get_by_label("证件号码后六位").fill(TAIL)
    await page.get_by_role("button", name="获取验证码").click()
    await expect(page.get_by_role("alert")).to_have_text("请输入有效的手机号码。")
    await expect(page.get_by_label("手机号码")).to_have_value("12345")
    await expect(page.get_by_label("证件号码后六位")).to_have_value(TAIL)
    checked += await assert_contrast(page)
    await ask_code(page, stack.url)
    checked += await assert_contrast(page)
    await assert_font_at_least(page, 14)
    await sign_in(page, stack.url)
    checked += await assert_contrast(page)
    await assert_font_at_least(page, 14)
    await unbind_all_and_settle(page)
    checked += await assert_contrast(page)
    await assert_font_at_least(page, 14)
    await assert_no_sideways_scroll(page)
    await page.goto(stack.url + "/check")
    checked += await assert_contrast(page)
    await page.goto(stack.url + "/nowhere")
    checked += await assert_contrast(page)
    assert checked > 100
    await shot(page, tmp_path, "not-found")


async def test_larger_text_mode_is_remembered_and_nothing_is_under_18px(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await page.goto(stack.url + "/")
    assert await assert_font_at_least(page, 14) == 16
    toggle = page.get_by_role("link", name="切换到大字模式（适老化）")
    await toggle.click()
    await expect(page.locator("html")).to_have_class("large-text")
    assert await assert_font_at_least(page, 18) >= 18
    await sign_in(page, stack.url)  # the choice rides along (a cookie), no flag in the URL
    await expect(page.locator("html")).to_have_class("large-text")
    assert await assert_font_at_least(page, 18) >= 18
    await assert_no_sideways_scroll(page)
    await assert_contrast(page)
    await shot(page, tmp_path, "large-text")
    await unbind_all_and_settle(page)
    await assert_font_at_least(page, 18)
    await assert_no_sideways_scroll(page)
    await assert_contrast(page)
    await shot(page, tmp_path, "large-text-settled")
    await page.get_by_role("link", name="切换回标准字号").click()
    await expect(page.locator("html")).not_to_have_class("large-text")
    await page.goto(stack.url + "/check")
    await expect(page.locator("html")).not_to_have_class("large-text")


async def test_a_long_name_wraps_and_the_page_never_scrolls_sideways(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await sign_in(page, stack.url)
    name = page.locator("li[data-platform=t-long] .app-name")
    await expect(name).to_have_text(LONG_NAME)
    await assert_no_sideways_scroll(page)
    width = page.viewport_size["width"] if page.viewport_size else 0
    box = await name.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    await page.get_by_role("button", name=re.compile("一键解绑")).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(LONG_NAME)
    dbox = await dialog.bounding_box()
    assert dbox is not None and dbox["x"] >= 0 and dbox["x"] + dbox["width"] <= width
    await assert_no_sideways_scroll(page)
    await shot(page, tmp_path, "long-name-dialog")


async def test_one_date_format_per_language(stack: Stack, page: Page) -> None:
    await sign_in(page, stack.url)
    text = await page.locator("main").inner_text()
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", text)
    assert not re.search(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}", text), "a second date format"
    await page.goto(stack.url + "/me?lang=en")
    text = await page.locator("main").inner_text()
    assert re.search(r"\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}\b", text)
    assert not re.search(r"\d{4}年|\d{4}[./-]\d{1,2}[./-]\d{1,2}", text)


async def test_the_english_page_has_no_chinese_chrome(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await page.goto(stack.url + "/?lang=en")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    assert await chinese_in_chrome(page, CONTENT) == []
    await sign_in(page, stack.url)
    await expect(page.get_by_role("heading", name="All numbers under my ID")).to_be_visible()
    await expect(page.get_by_role("banner")).to_contain_text("Demo Mobile customer service")
    assert await chinese_in_chrome(page, CONTENT) == []
    await unbind_all_and_settle(page, english=True)
    assert await chinese_in_chrome(page, CONTENT) == []
    await expect(page.locator("li[data-platform=t-loan]")).to_contain_text(
        "complain to Demo Mobile"
    )
    await assert_contrast(page)
    await shot(page, tmp_path, "english")
    await page.get_by_role("link", name="切换到简体中文").click()
    await expect(page.get_by_role("heading", name="一证通查", level=1)).to_be_visible()
    assert PHONE not in await page.content()
