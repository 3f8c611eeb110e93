"""The carrier app's settings and secret, validated once when the app is made."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from numbind.sdk.dates import region_time_zones
from numbind.sdk.phone import DEFAULT_REGION

__all__ = ["AppSettings", "CodeSender", "load_secret"]

# Sends a sign-in code to a number (an SMS gateway); not needed in demo mode.
CodeSender = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class AppSettings:
    carrier_bundle: Path
    db: Path
    secret: bytes = field(repr=False)
    demo: bool = False
    carrier_name: str = "示例移动"
    # The name on English pages (an English page shows no Chinese chrome); empty: the
    # same as carrier_name.
    carrier_name_en: str = ""
    # Where a holder complains when an app refuses or does not answer (a phone number
    # shown beside the reference); empty: the carrier is named without a number.
    support_phone: str = ""
    # Cookies are always ``Secure`` (the app is served over HTTPS, usually behind a
    # TLS-terminating proxy), except in a demo served as plain HTTP on loopback: this
    # setting, allowed only with ``demo``; the app then answers loopback clients only.
    plain_http_demo: bool = False
    registry_timeout_seconds: float = 8.0
    # A signed-in session ends after this long without a request, and this long after
    # sign-in whatever happens (both checked on the server).
    session_idle_seconds: int = 30 * 60
    session_max_age_seconds: int = 8 * 3600
    check_per_minute: int = 30
    # Sign-in forms per client address: a bucket of this many, refilled at this rate.
    signin_per_minute: int = 10
    # Numbers without +country code, and dates without a time (00:00 there), are this
    # region's: the same rule as the command line's --region.
    region: str = DEFAULT_REGION

    def carrier(self, lang: str) -> str:
        """The carrier's name on a page in ``lang``."""
        return (self.carrier_name_en or self.carrier_name) if lang == "en" else self.carrier_name

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("secret: want at least 16 bytes")
        if self.registry_timeout_seconds <= 0:
            raise ValueError(
                f"registry_timeout_seconds: got {self.registry_timeout_seconds}, want > 0"
            )
        region_time_zones(self.region)  # ValueError for an unknown region
        if self.session_idle_seconds < 60:
            raise ValueError(f"session_idle_seconds: got {self.session_idle_seconds}, want >= 60")
        if self.session_max_age_seconds < self.session_idle_seconds:
            raise ValueError(
                f"session_max_age_seconds: got {self.session_max_age_seconds}, want >= "
                f"session_idle_seconds ({self.session_idle_seconds})"
            )
        if self.plain_http_demo and not self.demo:
            raise ValueError("plain_http_demo: only in demo mode (cookies are Secure otherwise)")
        for name in ("check_per_minute", "signin_per_minute"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}, want >= 1")


def load_secret(path: Path) -> bytes:
    """The app secret (HMAC/scrypt pepper, cookie signing) from a file, created if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())
