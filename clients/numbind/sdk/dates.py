"""Times a person types: an RFC 3339 time with an offset, or a date alone.

A date alone (``2024-05-01``) means 00:00 that day in the time zone of the phone region the
caller works in (``--region``, default CN: 00:00 +08:00). Every time typed on the command
line is read here, and the carrier app is meant to read its own through ``parse_time`` too,
so the same text means the same instant everywhere. A time of day without an offset is
refused rather than guessed.

Which zone a region is in comes from libphonenumber's geocoding data (``phonenumbers``: the
time zones of the region's country calling code; +86 is all Beijing time, Asia/Shanghai)
and the offsets from the IANA database (``zoneinfo``). A region whose zones disagree on the
UTC offset at that midnight (US, RU, AU, ES, BR, MX, ID, ...) has no single "00:00 that
day": a date alone is refused there, naming the offsets, and the caller writes the offset
they mean. Guessing one zone (the capital's, the first listed) would silently move the
instant by hours for part of the country; a cut-off like reassigned-since or a tenure start
is exactly where hours matter. The check is made for the date given, so a region whose zones
agree on some days and not on others (daylight saving) is refused only on the days they
disagree. Regions that share a calling code (the +1 and +7 plans) are judged by every zone of
that code, so a one-zone member such as JM also needs the offset written; a refusal, never a
wrong instant.

Errors are ``TimeInputError`` (a ValueError) and never quote the text, which may be a phone
number typed into the wrong field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from numbind.sdk.phone import DEFAULT_REGION
from phonenumbers.tzdata import TIMEZONE_DATA

__all__ = [
    "TimeInputError",
    "format_offset",
    "parse_time",
    "parse_time_or_date",
    "region_time_zones",
    "start_of_day",
]

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339's date-time, its offset optional here so that a missing one gets its own message.
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?")
_EXAMPLE = "2024-05-01T08:00:00+08:00"


class TimeInputError(ValueError):
    """Typed text is not a usable time; the message says why and never quotes the text."""


def parse_time(text: str, region: str = DEFAULT_REGION) -> datetime:
    """An aware datetime: ``text`` as an RFC 3339 time with an offset, or a date alone
    (YYYY-MM-DD) as 00:00 that day in ``region``'s time zone."""
    value = parse_time_or_date(text)
    if isinstance(value, datetime):
        return value
    return start_of_day(value, region)


def parse_time_or_date(text: str) -> datetime | date:
    """The syntax alone: an aware datetime, or a date to resolve with ``start_of_day``.

    Command lines parse their options with this first, before every option (``--region``
    among them) is known."""
    text = text.strip()
    if _DATE_RE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise TimeInputError("not a calendar date (YYYY-MM-DD)") from None
    shape_error = TimeInputError(f"not a date (YYYY-MM-DD) or an RFC 3339 time (e.g. {_EXAMPLE})")
    text = text.upper()  # RFC 3339 allows t and z
    if not _TIME_RE.fullmatch(text):
        raise shape_error
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise shape_error from None
    if moment.utcoffset() is None:
        raise TimeInputError(
            "a time of day without a UTC offset: write Z or +hh:mm, or a date alone for 00:00"
        )
    return moment


def start_of_day(day: date, region: str = DEFAULT_REGION) -> datetime:
    """00:00 on ``day`` in ``region``'s time zone, with that zone's UTC offset.

    TimeInputError when the region's zones disagree on the offset that day (see the module
    docstring) or the region is unknown."""
    zones = region_time_zones(region)
    midnight = datetime(day.year, day.month, day.day)
    offsets = sorted({_offset(zone, midnight) for zone in zones})
    if len(offsets) > 1:
        shown = ", ".join(f"UTC{format_offset(o)}" for o in offsets)
        raise TimeInputError(
            f"a date alone is ambiguous in region {region.strip().upper()}: its time zones "
            f"are at {shown} on {day.isoformat()}; write the time with the offset you mean "
            f"({day.isoformat()}T00:00:00+hh:mm)"
        )
    return midnight.replace(tzinfo=timezone(offsets[0]))


@cache
def region_time_zones(region: str) -> tuple[str, ...]:
    """The IANA zones libphonenumber places ``region``'s numbers in (``CN``: Asia/Shanghai)."""
    code = region.strip().upper()
    calling_code = phonenumbers.country_code_for_region(code)
    if not calling_code:
        raise TimeInputError(f"region: got {region!r}, want a region code such as CN or US")
    zones = TIMEZONE_DATA.get(str(calling_code), ())
    if not zones:
        raise TimeInputError(
            f"region {code} has no time-zone data; write the time with its offset (e.g. {_EXAMPLE})"
        )
    return tuple(zones)


def format_offset(offset: timedelta) -> str:
    """``+08:00``, ``-05:00``, ``+05:45``."""
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _offset(zone: str, wall: datetime) -> timedelta:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeInputError(
            f"no IANA time-zone data for {zone} on this machine (install the tzdata "
            f"package); or write the time with its offset (e.g. {_EXAMPLE})"
        ) from None
    # A midnight skipped by a daylight-saving jump takes the offset in force before it
    # (PEP 495, fold=0): the same instant every zoneinfo user computes.
    return wall.replace(tzinfo=tz).utcoffset() or timedelta(0)
