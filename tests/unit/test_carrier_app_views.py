"""What the "my numbers" page says, without a browser or a registry: one list per group that
is also the progress list, the lead that follows it, and the next steps after a refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from numbind.carrier_app.i18n import Translator
from numbind.carrier_app.store import Number, RevocationRecord
from numbind.carrier_app.views import AppRow, Group, NumberCard, asked_by_group, number_card
from numbind.carrier_app.wording import Words, card_json
from numbind.sdk import NumberView, PlatformView
from numbind.sdk import RevocationProgress as Progress

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
NUMBER = Number(1, "sub", "+8613800138000", NOW - timedelta(days=40))
ORDER = "19a5418f-6783-4c2e-9d3b-1a2b3c4d5e6f"
zh, en = Translator("zh"), Translator("en")


def view(*platforms: PlatformView) -> NumberView:
    return NumberView(NUMBER.e164, NUMBER.tenure_start, list(platforms), timedelta(hours=24))


def bound(
    pid: str, name: str, *, pre: bool = True, n: int = 1, open_state: str = ""
) -> PlatformView:
    when = NOW - timedelta(days=400)
    rid = "r" if open_state else ""
    return PlatformView(pid, name, "other", pre, n, when, when, rid, open_state)


def progress(pid: str, name: str, state: str, reason: str = "") -> Progress:
    return Progress(
        pid, name, "other", state, 1, int(state == "DONE"), int(state == "REJECTED"), reason,
        (ORDER,), NOW + timedelta(hours=24),
    )  # fmt: skip


def record(rid: str, scope: str, minutes_ago: int) -> RevocationRecord:
    when = (NOW - timedelta(minutes=minutes_ago)).timestamp()
    return RevocationRecord(rid, "sub", NUMBER.id, scope, [], when)


def card(
    v: NumberView | None, records: list[RevocationRecord], results: list[list[Progress]]
) -> NumberCard:
    asked, asking = asked_by_group(records, list(results))
    return number_card(NUMBER, v, asked, asking)


def test_each_app_once_in_name_order_with_the_state_of_the_newest_ask() -> None:
    v = view(
        bound("loan", "示例小贷"),
        bound("travel", "示例旅行", open_state="OVERDUE"),
        bound("shop", "示例商城", pre=False),
        bound("new", "示例新应用"),
    )
    first = [
        progress("drive", "示例网盘", "DONE"),
        progress("loan", "示例小贷", "REJECTED", "open loan"),
        progress("travel", "示例旅行", "OVERDUE"),
    ]
    retry = [progress("travel", "示例旅行", "PENDING")]
    c = card(v, [record("r2", "retry", 1), record("r1", "previous", 5)], [retry, first])
    names = [r.name for r in c.previous.rows]
    assert names == sorted(names) and len(names) == len(set(names)) == 4
    states = {r.platform_id: r.state for r in c.previous.rows}
    # drive is unbound (gone from the registry's view, still listed); travel is being asked
    # again; loan refused; new was never asked.
    assert states == {"drive": "DONE", "loan": "REJECTED", "travel": "PENDING", "new": ""}
    assert [r.platform_id for r in c.previous.to_ask] == ["new"]
    assert c.previous.overdue == [] and c.previous.still_bound == 3
    assert [r.platform_id for r in c.mine.rows] == ["shop"] and c.mine.rows[0].state == ""
    assert c.asking == 1 and c.live and c.order_deadline == timedelta(hours=24)
    (drive,) = [r for r in c.previous.rows if r.platform_id == "drive"]
    assert (drive.accounts, drive.unbound) == (0, 1)


def test_an_app_unbound_and_bound_again_since_counts_as_bound() -> None:
    c = card(
        view(bound("drive", "示例网盘")),
        [record("r1", "previous", 5)],
        [[progress("drive", "示例网盘", "DONE")]],
    )
    assert [(r.platform_id, r.state) for r in c.previous.rows] == [("drive", "")]


def test_without_the_registrys_view_the_lists_hold_what_was_asked() -> None:
    c = card(None, [record("r1", "platform", 5)], [[progress("shop", "示例商城", "DELIVERED")]])
    assert not c.loaded and c.previous.rows == []
    assert [(r.platform_id, r.state) for r in c.mine.rows] == [("shop", "DELIVERED")]


def _group(*states: str) -> Group:
    rows = [
        AppRow(f"p{i}", f"App {i}", "other", 1, None, None, s, "why", "1234-ABCD-5678")
        for i, s in enumerate(states)
    ]
    return Group("previous", rows)


@pytest.mark.parametrize(
    ("states", "tone", "words"),
    [
        (("DONE", "PENDING", "DELIVERED"), "live", "Unbinding: 1 unbound, 2 in progress."),
        (("DONE", "DONE"), "ok", "All unbound: 2 unbound."),
        (("DONE", "REJECTED", "OVERDUE"), "warn", "Result: 1 unbound, 1 refused, 1 overdue."),
        (("REJECTED",), "bad", "Nothing has been unbound yet: 1 refused."),
        (("REJECTED", "OVERDUE"), "bad", "Nothing has been unbound yet"),
    ],
)
def test_the_lead_follows_the_states_and_is_never_green_when_nothing_was_unbound(
    states: tuple[str, ...], tone: str, words: str
) -> None:
    lead, got = Words(en, "Demo Mobile").lead(_group(*states))
    assert got == tone and lead.startswith(words)


def test_a_group_nobody_asked_about_yet_says_so() -> None:
    lead, tone = Words(zh, "示例移动").lead(_group("", ""))
    assert tone == "" and "一键解绑" in lead
    assert Words(zh, "示例移动").also_bound(_group("", "DONE")) == "另有 1 个应用尚未通知。"


def test_a_refusal_gives_the_reason_a_reference_and_where_to_complain() -> None:
    row = AppRow(
        "loan", "示例小贷", "lender", 1, None, None, "REJECTED", "有未结清的借款", "19A5-418F-6783"
    )
    reason, next_step = Words(zh, "示例移动", "10080").details(row)
    assert reason == "应用给出的原因：有未结清的借款"
    for part in ("联系示例小贷客服", "解绑单号 19A5-418F-6783", "向示例移动投诉", "10080"):
        assert part in next_step
    english = Words(en, "Demo Mobile").details(row)[1]
    assert "contact 示例小贷's customer service quoting reference 19A5-418F-6783" in english
    assert "complain to Demo Mobile, quoting the same reference" in english
    overdue = Words(en, "Demo Mobile").details(
        AppRow("t", "T", "travel", 1, None, None, "OVERDUE", "", "AAAA-BBBB-CCCC")
    )
    assert "did not confirm in time" in overdue[0] and "AAAA-BBBB-CCCC" in overdue[1]


def test_the_live_json_names_the_retry_only_once_nothing_is_open() -> None:
    settled = card(
        None,
        [record("r1", "previous", 5)],
        [
            [
                progress("travel", "示例旅行", "OVERDUE"),
                progress("loan", "示例小贷", "REJECTED", "x"),
            ]
        ],
    )
    data = card_json(Words(zh, "示例移动"), settled)
    retry = data["groups"]["previous"]["retry"]
    assert data["live"] is False
    assert retry["platforms"] == "travel" and retry["label"] == "再次通知 示例旅行"
    assert "示例小贷" not in retry["confirm"]
    live = card(None, [record("r1", "previous", 5)], [[progress("travel", "示例旅行", "PENDING")]])
    assert card_json(Words(zh, "示例移动"), live)["groups"]["previous"]["retry"] is None


def test_one_date_format_per_language_and_durations_in_whole_units() -> None:
    when = datetime(2021, 11, 29, 2, 5, tzinfo=UTC)
    assert (zh.date(when), zh.date_time(when)) == ("2021年11月29日", "2021年11月29日 10:05")
    assert (en.date(when), en.date_time(when)) == ("29 Nov 2021", "29 Nov 2021, 10:05")
    assert zh.promise(timedelta(hours=24)) == "通常几秒内完成，最长不超过 24 小时。"
    assert en.promise(timedelta(hours=1)) == "Usually done in seconds, never more than 1 hour."
    assert en.duration(timedelta(seconds=30)) == "30 seconds"
    assert en.duration(timedelta(seconds=90)) == "2 minutes"
    assert en.count("me.accounts", 1) == "1 account" and en.count("me.accounts", 2) == "2 accounts"


def test_no_english_string_has_chinese_in_it() -> None:
    from numbind.carrier_app.i18n import TEXT

    cjk = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
    offenders = [key for key, (_, english) in TEXT.items() if cjk.search(english)]
    # The language switch names Chinese in Chinese, as language menus do (lang="zh-CN").
    assert offenders == ["lang.other", "lang.other_label"]
