"""Typed times: a date alone is 00:00 in the region's time zone; several zones are refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from numbind.sdk.dates import (
    TimeInputError,
    format_offset,
    parse_time,
    parse_time_or_date,
    region_time_zones,
    start_of_day,
)

CST = timezone(timedelta(hours=8))


def test_a_date_alone_is_midnight_in_china_by_default() -> None:
    moment = parse_time("2024-05-01")
    assert moment == datetime(2024, 5, 1, tzinfo=CST)
    assert moment.utcoffset() == timedelta(hours=8)
    assert moment.astimezone(UTC) == datetime(2024, 4, 30, 16, tzinfo=UTC)
    assert region_time_zones("CN") == ("Asia/Shanghai",)


@pytest.mark.parametrize(
    ("region", "day", "offset"),
    [
        ("cn", "2024-05-01", "+08:00"),  # any case
        ("HK", "2024-05-01", "+08:00"),
        ("IN", "2024-05-01", "+05:30"),
        ("NP", "2024-05-01", "+05:45"),
        ("JP", "2024-05-01", "+09:00"),
        # Several zones that agree: the UK and its crown dependencies; daylight saving
        # follows the date.
        ("GB", "2024-01-15", "+00:00"),
        ("GB", "2024-07-15", "+01:00"),
        ("DE", "2024-07-15", "+02:00"),
    ],
)
def test_a_date_alone_takes_the_regions_offset_that_day(region: str, day: str, offset: str) -> None:
    moment = parse_time(day, region)
    assert (moment.date(), moment.time()) == (date.fromisoformat(day), datetime.min.time())
    assert format_offset(moment.utcoffset() or timedelta(0)) == offset


@pytest.mark.parametrize("region", ["US", "RU", "AU", "ES", "BR", "JM"])
def test_a_region_whose_zones_disagree_refuses_a_date_alone(region: str) -> None:
    assert len(region_time_zones(region)) > 1
    with pytest.raises(TimeInputError, match=rf"ambiguous in region {region}: .* UTC[+-]") as e:
        parse_time("2024-05-01", region)
    assert "2024-05-01T00:00:00+hh:mm" in str(e.value)
    # The offset written out is taken as given.
    assert parse_time("2024-05-01T00:00:00-05:00", region).utcoffset() == timedelta(hours=-5)


def test_a_midnight_skipped_by_daylight_saving_is_the_first_instant_of_that_day() -> None:
    # Cuba springs forward at 00:00 (to 01:00) on 2024-03-10: 00:00 never happens there.
    assert region_time_zones("CU") == ("America/Havana",)
    moment = parse_time("2024-03-10", "CU")
    havana = ZoneInfo("America/Havana")
    assert moment.astimezone(havana).date() == date(2024, 3, 10)
    assert (moment - timedelta(microseconds=1)).astimezone(havana).date() == date(2024, 3, 9)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2024-05-01T08:00:00+08:00", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00Z", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01t00:00z", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01 05:45:00.5+05:45", datetime(2024, 5, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        (" 2024-05-01T00:00:00Z\n", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_a_time_with_an_offset_ignores_the_region(text: str, want: datetime) -> None:
    for region in ("CN", "US"):
        assert parse_time(text, region) == want


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2024-05-01T08:00:00", "without a UTC offset"),
        ("2024-05-01 08:00", "without a UTC offset"),
        ("2024-02-30", "not a calendar date"),
        ("2024-02-30T00:00:00Z", "not a date"),
        ("20240501", "not a date"),  # ISO basic form: not RFC 3339
        ("2024-W18-3", "not a date"),
        ("13800138000", "not a date"),
        ("", "not a date"),
    ],
)
def test_bad_input_says_why_without_quoting_it(text: str, reason: str) -> None:
    with pytest.raises(TimeInputError, match=reason) as e:
        parse_time(text)
    if text:
        assert text not in str(e.value)


def test_unknown_region() -> None:
    with pytest.raises(TimeInputError, match="region: got 'XX'"):
        parse_time("2024-05-01", "XX")
    # A time with an offset needs no region at all.
    assert parse_time("2024-05-01T00:00:00Z", "XX").tzinfo is not None


def test_syntax_first_region_later() -> None:
    value = parse_time_or_date("2024-05-01")
    assert value == date(2024, 5, 1) and not isinstance(value, datetime)
    assert start_of_day(date(2024, 5, 1), "IN") == parse_time("2024-05-01", "IN")


def test_china_kept_daylight_saving_until_1991_and_the_offset_follows() -> None:
    assert parse_time("1991-05-01").utcoffset() == timedelta(hours=9)
    assert parse_time("1991-12-01").utcoffset() == timedelta(hours=8)


@given(st.dates(min_value=date(1992, 1, 1), max_value=date(2100, 1, 1)))
def test_any_date_in_china_is_1600_utc_the_day_before(day: date) -> None:
    moment = parse_time(day.isoformat())
    assert moment.astimezone(UTC) == datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(
        hours=8
    )
