"""What the demo prints once it is up: the story, where to sign in, where to look, and the
exact commands that add a platform of your own to the running demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

from numbind.demo.cast import (
    NEW_HOLDER,
    QUIET,
    SECOND_NUMBER,
    YOUR_APP_ID,
    YOUR_APP_NAME,
    _days,
)

__all__ = ["print_welcome", "your_platform_lines"]


class DemoPlaces(Protocol):
    """Where the running demo keeps things (numbind.demo.__main__.Demo)."""

    root: Path
    order_deadline: float

    @property
    def data(self) -> Path: ...
    @property
    def listen(self) -> str: ...
    @property
    def url(self) -> str: ...
    def bundle_dir(self, principal: str) -> Path: ...
    def where(self) -> list[str]: ...


def _numbind() -> str:
    """How to run the `numbind` of this demo's Python, as short as it can be written."""
    exe = Path(sys.executable).with_name("numbind")
    if not exe.exists():
        return "numbind"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def write_your_bindings(demo: DemoPlaces) -> Path:
    """A bindings file for the visitor's own platform: the new holder's number, bound ten
    days ago (in their tenure, so it shows under 您的绑定), and one more."""
    path = demo.root / f"{YOUR_APP_ID}.csv"
    path.write_text(
        "phone,account_id,bound_at,kind\n"
        f"{NEW_HOLDER.phone},my-user-1,{_days(10).isoformat(timespec='seconds')},login\n"
        f"{SECOND_NUMBER},my-user-2,{_days(3).isoformat(timespec='seconds')},payment\n"
    )
    return path


def your_platform_lines(demo: DemoPlaces) -> list[str]:
    """The exact commands that add a platform of your own to this running demo."""
    numbind = _numbind()
    bundle = demo.bundle_dir(YOUR_APP_ID)
    return [
        "Add your own platform to this demo (in another terminal, while it runs):",
        f'  {numbind} admin add-platform {YOUR_APP_ID} --display-name "{YOUR_APP_NAME}" '
        f"--category other --data-dir {demo.data} --out {bundle}",
        f"  {numbind} platform publish --bundle {bundle} --file {write_your_bindings(demo)}",
        f"  then reload {demo.url}/me: {YOUR_APP_NAME} is under 您的绑定 (Yours); "
        f"unbind it there and see the order with",
        f"  {numbind} platform events --bundle {bundle} --ack unbound",
    ]


def print_welcome(demo: DemoPlaces, story: list[str]) -> None:
    drive = demo.bundle_dir("demo-drive")
    numbind = _numbind()
    lines = [
        "",
        "The story:",
        *(f"  - {line}" for line in story),
        "",
        f"Open {demo.url}  (the carrier app, in Chinese; English at the top right)",
        f"  sign in as the new holder:  phone {NEW_HOLDER.phone}, ID last six "
        f"{NEW_HOLDER.id_number[-6:]}",
        "  the one-time code appears on the page in a DEMO banner, and in this terminal",
        "  then press 一键解绑 and watch each app confirm (示例小贷 refuses, 示例银行 is slow,",
        f"  示例旅行 is offline and goes overdue after {demo.order_deadline:.0f} s)",
        f"  a subscriber with nothing bound:  phone {QUIET.phone}, ID last six "
        f"{QUIET.id_number[-6:]}",
        f"  reassigned check for callers:  {demo.url}/check  "
        f"(try {NEW_HOLDER.phone} since {_days(365):%Y-%m-%d})",
        "",
        "The federation (which app sits where):",
        *(f"  {line}" for line in demo.where()),
        "",
        "Where to look:",
        f"  registries        {demo.root}/{{hub,net,bank}} (mTLS; embedded SQLite in each)",
        f"  registry logs     {demo.root}/{{hub,net,bank}}.log",
        f"  federation        {numbind} federation show --data-dir {demo.root / 'hub'}",
        f"  bundles           {demo.root / 'bundles'}",
        f"  tokenise yourself {numbind} tokenize --bundle {drive} 13800138000",
        f"  admin stats       {numbind} admin stats --data-dir {demo.data}",
        "",
        *your_platform_lines(demo),
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
