"""Number normalisation: libphonenumber's rules (via `phonenumbers`), E.164 out.

Errors name the input's position, never the input: a number must not reach a log.
"""

from __future__ import annotations

import phonenumbers

__all__ = ["DEFAULT_REGION", "InvalidNumber", "to_e164"]

DEFAULT_REGION = "CN"


class InvalidNumber(ValueError):
    """A number that is not a valid phone number: ``position`` is 1-based in the caller's
    input (``"number 3: not a phone number"``), ``reason`` says what is wrong."""

    item = "number"

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"number {position:,}: {reason}")
        self.position = position
        self.reason = reason


def to_e164(raw: str, index: int = 0, region: str = DEFAULT_REGION) -> str:
    """The E.164 form (e.g. +8613800138000) of a valid number, or InvalidNumber.

    ``index`` is the number's 0-based index in the caller's input; the error reports it as
    the 1-based ``position``.
    """
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(index + 1, "not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(index + 1, "not a valid number for its region")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
