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
from numbind.sdk.errors import Unavailable

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


class NothingAnswered(FakeRegistry):
    """Only an unreachable member: no app listed, and none known absent."""

    async def query(self, subject: str, numbers: Sequence[tuple[str, datetime]]) -> list[Any]:
        return [
            NumberView(e164, start, [], timedelta(hours=24), (BANK_DOWN,))
            for e164, start in numbers
        ]


class RegistryDown(FakeRegistry):
    async def query(self, subject: str, numbers: Sequence[tuple[str, datetime]]) -> list[Any]:
        raise Unavailable("registry: no answer")


async def test_a_list_a_registry_could_not_give_is_not_called_empty(tmp_path: Path) -> None:
    # With a member unreachable, "nothing left by a previous holder" and "no bindings of
    # your own" were stated as facts, under the notice that the member's apps may be missing.
    registry, gateway = NothingAnswered(), Gateway()
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as client:
        await sign_in(client, gateway)
        me = await client.get("/me")
    assert 'data-role="unreachable">暂时联系不上 示例金融平台登记' in me.text
    assert "没有前任机主留下的绑定" not in me.text and "暂无您本人的绑定" not in me.text
    assert 'data-role="mine-unknown"' in me.text


async def test_a_page_the_registry_could_not_answer_lists_nothing_as_empty(
    tmp_path: Path,
) -> None:
    # The page said it could not read the number's bindings, then "您的绑定 0 … 暂无您本人的
    # 绑定" right under it.
    registry, gateway = RegistryDown(), Gateway()
    async with serving(make_app(settings_for(tmp_path), registry, gateway)) as client:
        await sign_in(client, gateway)
        me = await client.get("/me")
    assert me.status_code == 200
    assert "暂时无法读取" in me.text
    assert "暂无您本人的绑定" not in me.text and 'data-group="mine"' not in me.text
