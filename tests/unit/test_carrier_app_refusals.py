"""An app that refused the carrier's reissue (not an unbinding the subscriber asked for
here), over HTTP without a browser: the registry's view carries the refusal, and the page
shows it as it shows a refusal of the subscriber's own ask — 应用拒绝, the app's reason,
the reference to quote and what to do next — and leaves the app out of 一键解绑."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from numbind.sdk import NumberView, PlatformView, RefusedRevocation, order_reference

from tests.unit.carrier_app_http import (
    FakeRegistry,
    Gateway,
    make_app,
    serving,
    settings_for,
    sign_in,
    zh,
)

REISSUE = "0c6d5b2f-9a8b-4d3f-8e4c-2b3c4d5e6f70"
REFUSED_ORDER = "29b6529a-7894-4d3f-8e4c-9f8e7d6c5b4a"
REASON = "账户存在未结清借款，请联系客服"


class RefusingRegistry(FakeRegistry):
    """p3 refused the reissue's order (still bound); acme is bound and was never asked."""

    async def query(self, subject: str, numbers: Sequence[tuple[str, datetime]]) -> list[Any]:
        when = datetime.now(UTC) - timedelta(days=400)
        refused = RefusedRevocation(REISSUE, REFUSED_ORDER, REASON, when)
        return [
            NumberView(
                e164,
                start,
                [
                    PlatformView("acme", "示例网盘", "cloud-drive", True, 1, when, when, "", ""),
                    PlatformView(
                        "p3", "平台p3", "lender", True, 1, when, when, "", "", refused=refused
                    ),
                ],
                timedelta(hours=24),
            )
            for e164, start in numbers
        ]


async def test_a_refused_reissue_shows_its_reason_and_reference_and_is_not_asked_again(
    tmp_path: Path,
) -> None:
    registry, gateway = RefusingRegistry(), Gateway()
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as client:
        await sign_in(client, gateway)
        page = html.unescape((await client.get("/me")).text)
        row = page.split('data-platform="p3"', 1)[1].split("</li>", 1)[0]
        assert 'data-state="REJECTED"' in row and zh("state.REJECTED") in row
        assert zh("row.reason", reason=REASON) in row
        reference = order_reference(REFUSED_ORDER)
        assert f'<span class="ref">{reference}</span>' in row
        assert "联系平台p3客服" in row  # what to do next: contact the app, or the carrier
        assert "/me/proof/" not in row  # the reissue is not an ask of the subscriber's
        # 一键解绑 asks acme only: an app that refused is not asked again.
        assert 'name="platforms" value="acme"' in page
        assert 'value="acme,p3"' not in page and 'value="p3"' not in page
        assert zh.count("me.revoke_all", 1) in page
        confirm = await client.get("/me/confirm", params={"number": 1, "scope": "previous"})
        assert "示例网盘" in confirm.text and "平台p3" not in confirm.text
        assert 'name="platforms" value="acme"' in confirm.text
        # Nor by a retry, which asks only overdue apps.
        retry = await client.get("/me/confirm", params={"number": 1, "scope": "retry"})
        assert retry.headers["location"] == "/me?notice=nothing#n-1"
