"""Checks on what the browser actually rendered, from computed styles: the contrast of every
visible text element against the background it sits on, the smallest font size shown, any
horizontal scrolling, and Chinese left in an English page's chrome."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page

# For every visible element with text of its own (a text node, or an input's value): its
# colour, the background it sits on (the element's and its ancestors' backgrounds composited
# up to the first opaque one, over white), the opacity it is drawn with, and its font size.
_TEXT_ELEMENTS = """
(root) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const over = (top, bottom) => {
    const a = top.a + bottom.a * (1 - top.a);
    const mix = (k) => (top[k] * top.a + bottom[k] * bottom.a * (1 - top.a)) / a;
    return {r: mix("r"), g: mix("g"), b: mix("b"), a};
  };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const bg = parse(getComputedStyle(n).backgroundColor);
      if (bg && bg.a > 0) { layers.push(bg); if (bg.a >= 1) break; }
    }
    let c = {r: 255, g: 255, b: 255, a: 1};
    for (let i = layers.length - 1; i >= 0; i--) c = over(layers[i], c);
    return c;
  };
  const opacity = (el) => {
    let o = 1;
    for (let n = el; n; n = n.parentElement) o *= Number(getComputedStyle(n).opacity);
    return o;
  };
  const ownText = (el) => {
    if (el.tagName === "INPUT") return el.value;
    return Array.from(el.childNodes)
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent).join("").trim();
  };
  const out = [];
  for (const el of root.querySelectorAll("*")) {
    const text = ownText(el);
    if (!text) continue;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility !== "visible" || box.width === 0 || box.height === 0) continue;
    if (box.right <= 0 || box.bottom <= 0 && box.top < 0) continue;
    if (el.closest("[hidden]") || (el.closest("dialog") && !el.closest("dialog[open]"))) continue;
    const fg = parse(style.color);
    out.push({
      text,
      tag: el.tagName.toLowerCase(),
      cls: el.className && el.className.baseVal === undefined ? el.className : "",
      fg, bg: background(el), opacity: opacity(el),
      size: parseFloat(style.fontSize),
    });
  }
  return out;
}
"""


@dataclass(frozen=True)
class TextElement:
    text: str
    tag: str
    cls: str
    ratio: float
    size: float


def _luminance(c: dict[str, float]) -> float:
    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c["r"]) + 0.7152 * channel(c["g"]) + 0.0722 * channel(c["b"])


def _ratio(item: dict[str, Any]) -> float:
    fg, bg = dict(item["fg"]), item["bg"]
    alpha = fg["a"] * item["opacity"]
    # The text drawn over its background at its alpha (and its ancestors' opacity).
    shown = {k: fg[k] * alpha + bg[k] * (1 - alpha) for k in ("r", "g", "b")}
    hi, lo = sorted((_luminance(shown), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def text_elements(page: Page, within: str = "body") -> list[TextElement]:
    items = await page.locator(within).first.evaluate(_TEXT_ELEMENTS)
    return [
        TextElement(i["text"], i["tag"], str(i["cls"]), round(_ratio(i), 2), i["size"])
        for i in items
    ]


async def assert_contrast(page: Page, minimum: float = 4.5, within: str = "body") -> int:
    """Every visible text element meets ``minimum``:1; returns how many were checked."""
    elements = await text_elements(page, within)
    low = [e for e in elements if e.ratio < minimum]
    assert not low, "contrast below {}:1: {}".format(
        minimum, "; ".join(f"{e.tag}.{e.cls} {e.text[:40]!r} {e.ratio}" for e in low[:10])
    )
    assert elements, "no text found to check"
    return len(elements)


async def assert_font_at_least(page: Page, px: float) -> float:
    """No visible text is smaller than ``px``; returns the body's own size."""
    elements = await text_elements(page)
    small = [e for e in elements if e.size < px - 0.05]
    assert not small, "text below {} px: {}".format(
        px, "; ".join(f"{e.tag}.{e.cls} {e.text[:40]!r} {e.size}px" for e in small[:10])
    )
    size: float = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    return size


async def assert_no_sideways_scroll(page: Page) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    scroll: int = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: {scroll}px in a {width}px viewport"


_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


async def chinese_in_chrome(page: Page, content: tuple[str, ...]) -> list[str]:
    """Visible text with Chinese in it on an English page, once the content (app names, an
    app's own reason, the language switch, which is written in its language) is taken out."""
    found = []
    for e in await text_elements(page):
        text = e.text
        for item in content:
            text = text.replace(item, "")
        if _CJK.search(text):
            found.append(e.text)
    switch = await page.locator("a[lang='zh-CN']").all_inner_texts()
    return [t for t in found if t not in switch]
