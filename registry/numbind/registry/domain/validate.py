"""Validators shared by services. Each raises InvalidArgument as `field: got X, want Y`."""

from __future__ import annotations

import re

from numbind.protocol.categories import category_problem
from numbind.protocol.limits import (
    EARLIEST_US,
    FUTURE_SKEW_US,
    MAX_DISPLAY_NAME,
    display_name_problem,
)
from numbind.registry.domain.types import US, now_us
from numbind.registry.errors import field_error

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# The shape of every token key id (registry.keys.key_id_for).
KEY_ID = re.compile(r"[0-9a-f]{16}")
_PRINCIPAL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Revocation ids are uuid4 text, minted by the registry that records the revocation.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What holders read about a principal: numbind.protocol.limits and .categories.
DISPLAY_NAME_MAX = MAX_DISPLAY_NAME


def request_id(value: str) -> str:
    if not _REQUEST_ID.fullmatch(value):
        raise field_error("request_id", repr(value[:40]), "1..128 printable ASCII characters")
    return value


def revocation_id(field: str, value: str) -> str:
    if not _UUID.fullmatch(value):
        raise field_error(field, repr(value[:40]), "a UUID")
    return value


def principal_id(field: str, value: str) -> str:
    if not _PRINCIPAL_ID.fullmatch(value):
        raise field_error(field, repr(value[:70]), "[a-z0-9][a-z0-9._-]{0,62}")
    return value


def display_name(value: str) -> str:
    """numbind.protocol.limits.display_name_problem, the one rule for every way in."""
    want = display_name_problem(value)
    if want is None:
        return value
    got = f"{len(value)} characters" if len(value) > DISPLAY_NAME_MAX else repr(value[:70])
    raise field_error("display_name", got, want)


def category(value: str) -> str:
    """A code of numbind.protocol.categories."""
    want = category_problem(value)
    if want is not None:
        got = f"{len(value)} characters" if len(value) > 64 else repr(value)
        raise field_error("category", got, want)
    return value


def batch_size(field: str, n: int, limit: int) -> None:
    if n == 0:
        raise field_error(field, "0 items", f"1..{limit}")
    if n > limit:
        raise field_error(field, f"{n} items", f"at most {limit}")


def instant(field: str, us: int, *, now: int | None = None, allow_unset: bool = False) -> int:
    """A time that is set, not before 1990 and not in the future beyond 5 minutes."""
    if us == 0 and allow_unset:
        return us
    current = now_us() if now is None else now
    if us == 0:
        raise field_error(field, "unset", "a timestamp")
    if us < EARLIEST_US:
        raise field_error(field, _iso(us), "1990-01-01 or later")
    if us > current + FUTURE_SKEW_US:
        raise field_error(field, _iso(us), "not in the future (5 minutes of skew allowed)")
    return us


def _iso(us: int) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(us / US, dt.UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{us}us"
