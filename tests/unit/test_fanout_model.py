"""The fan-out's pure parts: the outbox entry's stored form, the retry back-off, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.registry.config import Settings, load_settings
from numbind.registry.domain.types import now_us
from numbind.registry.errors import InvalidArgument
from numbind.registry.services.fanout import RetryPolicy
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation


def test_an_outbox_entry_reads_back_exactly() -> None:
    entry = MemberRevocation(
        "0b5c4a1e-8f7a-4c2e-9d3b-1a2b3c4d5e6f",
        AdmittedNumber(bytes(range(32)), "00000000000000aa", 1_700_000_000_000_000),
        2,
        ("shop", "loan"),
    )
    text = entry.to_json()
    assert MemberRevocation.from_json(text) == entry
    # Canonical: one entry, one text (the outbox compares nothing, but logs stay diffable).
    assert text == MemberRevocation.from_json(text).to_json()
    assert "shop" in text and "account" not in text


@pytest.mark.parametrize("text", ["", "{}", '{"revocation_id": 1}', "[1]"])
def test_a_damaged_outbox_entry_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidArgument, match="fan-out outbox entry"):
        MemberRevocation.from_json(text)


def test_retries_back_off_and_stay_under_the_cap() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_seconds=4.0)
    delays = [(policy.next_attempt_us(n) - now_us()) / 1e6 for n in range(8)]
    assert 0.3 < delays[0] < 0.7
    assert delays[2] > delays[0]
    assert all(d <= 4.0 * 1.2 + 0.05 for d in delays)
    assert delays[-1] > 3.0


def test_fanout_settings_come_from_flags_or_the_environment(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).fanout_deadline_seconds == 2.0
    s = load_settings(
        {"data_dir": tmp_path, "fanout_deadline_seconds": 0.5},
        {"NUMBIND_FANOUT_RETRY_MAX_SECONDS": "7"},
    )
    assert (s.fanout_deadline_seconds, s.fanout_retry_max_seconds) == (0.5, 7.0)
    with pytest.raises(ValueError, match="fanout_deadline_seconds: got 0"):
        Settings(data_dir=tmp_path, fanout_deadline_seconds=0)


def test_the_cli_names_each_platforms_registry_and_the_unreachable_ones() -> None:
    from datetime import UTC, datetime

    from numbind.cli.holders import _view_json, _view_lines
    from numbind.sdk import NumberView, PlatformView, UnavailableRegistry

    when = datetime(2020, 1, 1, tzinfo=UTC)
    view = NumberView(
        "+8613800138000",
        when,
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
            )
        ],
        None,
        (UnavailableRegistry("bank", "示例金融平台登记", "unreachable (connection refused)"),),
    )
    lines = _view_lines(view)
    assert lines[1].endswith("; at 示例互联网平台登记")
    assert lines[2].startswith("  NOT ASKED: registry 示例金融平台登记 (bank) could not be reached")
    as_json = _view_json(view)
    assert as_json["platforms"][0]["registry_id"] == "net"
    assert as_json["unavailable"][0]["reason"] == "unreachable (connection refused)"
