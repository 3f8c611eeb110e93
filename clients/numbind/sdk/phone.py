"""Number normalisation: libphonenumber's rules (via `phonenumbers`), E.164 out.

Errors name the input's position, never the input: a number must not reach a log.
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "CN"


class InvalidNumber(ValueError):
    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"number at position {position}: {reason}")
        self.position = position
        self.reason = reason


def to_e164(raw: str, position: int = 0, region: str = DEFAULT_REGION) -> str:
    """The E.164 form (e.g. +8613800138000) of a valid number, or InvalidNumber."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(position, "not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(position, "not a valid number for its region")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
