"""Screenshots of the carrier app's 一证通查 page for the README: before and after 一键解绑 on
a desktop, and the settled page on a phone in the larger-text mode (适老化).

Runs the real demo (`python -m numbind.demo`) on free ports in a temporary directory, signs in
as the new holder of the reissued number in Debian's headless Chromium, saves the page, presses
一键解绑, waits until every app has answered (done, refused or overdue), reloads, saves it
again, then saves the phone view. Then stops the demo with Ctrl-C (SIGINT).

    .venv/bin/python tests/browser/screenshots.py   # docs/carrier-app-{before,after,phone}.png

Chinese text needs a CJK font in the system (Debian: fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
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
PHONE, TAIL = "13800138000", "081234"
SETTLED = ("DONE", "REJECTED", "OVERDUE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_cjk_font() -> bool:
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return False
    return bool(out.strip())


def _start_demo(work: Path, app_port: int, deadline: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NUMBIND_DEMO_DIR": str(work / "demo"),
        "NUMBIND_DEMO_REGISTRY_PORT": str(_free_port()),
        "NUMBIND_DEMO_APP_PORT": str(app_port),
        "PYTHONUNBUFFERED": "1",
    }
    log = work / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "numbind.demo", "--order-deadline", str(deadline)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    until = time.monotonic() + 120
    while "Press Ctrl-C to stop." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > until:
            raise SystemExit(f"the demo did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    return proc


def _sign_in(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.get_by_label("手机号码").fill(PHONE)
    page.get_by_label("证件号码后六位").fill(TAIL)
    page.get_by_role("button", name="获取验证码").click()
    found = re.search(r"\d{6}", page.get_by_test_id("demo-code").inner_text())
    if not found:
        raise SystemExit("no demo code on the page")
    page.get_by_label("验证码", exact=True).fill(found.group(0))
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_url(re.compile(r"/me$"))


def _settled(page: Page, deadline: float) -> None:
    rows = page.locator("section[data-group=previous] li.app")
    until = time.monotonic() + deadline + 30
    while True:
        states = [r.get_attribute("data-state") for r in rows.all()]
        if states and all(s in SETTLED for s in states):
            return
        if time.monotonic() > until:
            raise SystemExit(f"apps did not all answer: {states}")
        time.sleep(0.5)


def capture(out_dir: Path, deadline: float) -> list[Path]:
    before, after = out_dir / "carrier-app-before.png", out_dir / "carrier-app-after.png"
    phone = out_dir / "carrier-app-phone.png"
    app_port = _free_port()
    url = f"http://127.0.0.1:{app_port}"
    with tempfile.TemporaryDirectory(prefix="numbind-shots-") as tmp:
        demo = _start_demo(Path(tmp), app_port, deadline)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                _sign_in(page, url)
                page.screenshot(path=str(before), full_page=True)
                page.get_by_role("button", name=re.compile("一键解绑")).click()
                dialog = page.get_by_role("dialog", name="确认解绑")
                expect(dialog).to_be_visible()
                dialog.get_by_role("button", name="确认解绑").click()
                page.wait_for_url(re.compile(r"/me#n-\d+$"))
                _settled(page, deadline)
                # Reload: what a holder coming back sees (no banner, the retry offered).
                page.goto(url + "/me")
                page.screenshot(path=str(after), full_page=True)
                mobile = browser.new_page(
                    viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
                )
                mobile.goto(url + "/?text=large")
                _sign_in(mobile, url)
                mobile.screenshot(path=str(phone), full_page=True)
                browser.close()
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
    return [before, after, phone]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--order-deadline",
        type=float,
        default=12.0,
        help="seconds until the offline app's order shows overdue (default 12)",
    )
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
        return 2
    if not _has_cjk_font():
        print(
            "warning: no CJK font found (apt-get install fonts-noto-cjk); Chinese will not render"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in capture(args.out_dir, args.order_deadline):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
