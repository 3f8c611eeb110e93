"""The carrier app in a federation: each app's registry on its row, and a plain notice when
a registry could not be reached (its apps may be missing), in zh-CN and en."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from numbind.carrier_app.i18n import Translator
from numbind.carrier_app.store import Number
from numbind.carrier_app.views import asked_by_group, number_card
from numbind.carrier_app.wording import Words
from numbind.sdk import NumberView, PlatformView, UnavailableRegistry

from tests.unit.carrier_app_http import (
    FakeRegistry,
    Gateway,
    make_app,
    serving,
    settings_for,
    sign_in,
)

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NUMBER = Number(1, "sub", "+8613800138000", NOW - timedelta(days=40))
BANK_DOWN = UnavailableRegistry("bank", "示例金融平台登记", "no answer within 2 s")


def _view(*, unavailable: tuple[UnavailableRegistry, ...] = ()) -> NumberView:
    when = NOW - timedelta(days=400)
    return NumberView(
        NUMBER.e164,
        NUMBER.tenure_start,
        [
            PlatformView(
                "shop",
                "示例购物",
                "shopping",
                True,
                1,
                when,
                when,
                "",
                "",
                "net",
                "示例互联网平台登记",
            ),
        ],
        timedelta(hours=24),
        unavailable,
    )


def _card(view: NumberView) -> Any:
    asked, asking = asked_by_group([], [])
    return number_card(NUMBER, view, asked, asking)


def test_rows_name_their_registry_and_the_card_says_which_could_not_be_reached() -> None:
    card = _card(_view(unavailable=(BANK_DOWN,)))
    (row,) = card.previous.rows
    assert row.registry == "示例互联网平台登记"
    zh, en = Words(Translator("zh"), "示例移动"), Words(Translator("en"), "Example Mobile")
    assert zh.registry(row) == "登记于 示例互联网平台登记"
    assert en.registry(row) == "Registered with 示例互联网平台登记"
    assert "暂时联系不上 示例金融平台登记" in zh.unreachable(card)
    assert "可能没有列在下面" in zh.unreachable(card)
    assert en.unreachable(card).startswith("We could not reach 示例金融平台登记 just now")
    assert "may be missing" in en.unreachable(card)


def test_one_registry_names_none_and_says_nothing() -> None:
    view = _view()
    plain = NumberView(
        view.e164,
        view.tenure_start,
        [PlatformView("shop", "示例购物", "shopping", True, 1, NOW, NOW, "", "")],
        view.order_deadline,
    )
    card = _card(plain)
    words = Words(Translator("zh"), "示例移动")
    assert card.previous.rows[0].registry == "" and words.registry(card.previous.rows[0]) == ""
    assert card.unreachable == () and words.unreachable(card) == ""


class FederatedRegistry(FakeRegistry):
    async def query(self, subject: str, numbers: Sequence[tuple[str, datetime]]) -> list[Any]:
        return [
            NumberView(
                e164,
                start,
                _view().platforms,
                timedelta(hours=24),
                (BANK_DOWN,),
            )
            for e164, start in numbers
        ]


async def test_my_numbers_page_shows_registries_and_the_unreachable_one(tmp_path: Path) -> None:
    registry, gateway = FederatedRegistry(), Gateway()
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as client:
        await sign_in(client, gateway)
        me = await client.get("/me")
    assert me.status_code == 200
    assert 'data-role="registry">登记于 示例互联网平台登记<' in me.text
    assert 'data-role="unreachable">暂时联系不上 示例金融平台登记' in me.text
