"""What the carrier app's store hands out: subscribers, numbers, sign-in challenges and
revocation records, the sign-in refusals, and the ID and number helpers they rely on. No
value here ever carries an ID number, and a number prints masked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "BadCredentials",
    "Challenge",
    "ChallengeInvalid",
    "CodeExpired",
    "CodeSpent",
    "Delayed",
    "Number",
    "RevocationRecord",
    "SignInError",
    "Subscriber",
    "WrongCode",
    "id_tail",
    "mask",
    "normalise_id",
]

_ID_RE = re.compile(r"\d{17}[\dX]|\d{15}")
_TAIL_RE = re.compile(r"[\dX]{6}")


class SignInError(Exception):
    """A sign-in step failed. Subclasses say why; none carries a number or an ID."""


class BadCredentials(SignInError):
    """The number is not ours, or the ID's last six do not match (indistinguishable).
    ``retry_at``: when the number's next try will be heard (0: at once)."""

    def __init__(self, retry_at: float = 0.0) -> None:
        super().__init__("number or ID does not match")
        self.retry_at = retry_at


class Delayed(SignInError):
    """The number is backing off after failed tries: no try is heard before ``until``
    (at most throttle.BACKOFF_CAP_SECONDS away)."""

    def __init__(self, until: float) -> None:
        super().__init__(f"try again at {until:.0f}")
        self.until = until


class CodeSpent(SignInError):
    """Too many wrong codes for this challenge: it is over; ask for a new code."""


class WrongCode(SignInError):
    def __init__(self, remaining: int) -> None:
        super().__init__(f"wrong code; {remaining} tries left")
        self.remaining = remaining


class CodeExpired(SignInError):
    pass


class ChallengeInvalid(SignInError):
    """Unknown or already used challenge: start again."""


@dataclass(frozen=True)
class Subscriber:
    id: str
    subject: str


@dataclass(frozen=True)
class Number:
    id: int
    subscriber_id: str
    e164: str
    tenure_start: datetime

    def __repr__(self) -> str:  # never a full number in a log line
        return f"Number(id={self.id}, e164={mask(self.e164)!r})"


@dataclass(frozen=True)
class Challenge:
    id: str
    code: str
    expires_at: float
    e164: str

    def __repr__(self) -> str:
        return f"Challenge(id={self.id!r}, e164={mask(self.e164)!r})"


@dataclass(frozen=True)
class RevocationRecord:
    id: str
    subscriber_id: str
    number_id: int
    scope: str
    platforms: list[str]
    created_at: float


def normalise_id(id_number: str) -> str:
    """An ID number in canonical form (no spaces, upper-case X), or ValueError."""
    value = re.sub(r"\s+", "", id_number).upper()
    if not _ID_RE.fullmatch(value):
        raise ValueError("id_number: want 18 characters (digits, last may be X) or 15 digits")
    return value


def id_tail(text: str) -> str:
    """The last six characters of an ID, canonical, or ValueError."""
    value = re.sub(r"\s+", "", text).upper()
    if not _TAIL_RE.fullmatch(value):
        raise ValueError("id_tail: want six characters, digits or X")
    return value


def mask(e164: str) -> str:
    """138****8000 for +8613800138000: safe for logs and pages."""
    national = e164[3:] if e164.startswith("+86") else e164.lstrip("+")
    if len(national) < 8:
        return "*" * len(national)
    return f"{national[:3]}****{national[-4:]}"
