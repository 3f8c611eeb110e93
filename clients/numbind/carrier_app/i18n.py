"""The carrier app's languages: Simplified Chinese first, English second.

Pages are Chinese by default; ``?lang=en`` (kept in a cookie) switches to English. Every
string is in texts.py and texts_numbers.py; dates have one format per language and are
shown in China Standard Time (UTC+8), the carrier's own clock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from numbind.carrier_app.texts import COMMON
from numbind.carrier_app.texts_numbers import NUMBERS
from numbind.protocol import categories

__all__ = ["CST", "DEFAULT_LANG", "LANGS", "TEXT", "Translator", "pick_lang"]

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
CST = timezone(timedelta(hours=8), "CST")

# key -> (zh-CN, en): every string the app shows.
TEXT: dict[str, tuple[str, str]] = {**COMMON, **NUMBERS}

SETTLED = ("DONE", "REJECTED", "OVERDUE")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def pick_lang(query: str | None, cookie: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGS:
            return candidate
    return DEFAULT_LANG


class Translator:
    """Strings, dates and labels for one language; templates call it as ``t(key, ...)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._i = LANGS.index(self.lang)

    def __call__(self, key: str, **fields: object) -> str:
        text = TEXT[key][self._i]
        return text.format(**fields) if fields else text

    @property
    def html_lang(self) -> str:
        return "zh-CN" if self.lang == "zh" else "en"

    def date(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        d = when.astimezone(CST)
        if self.lang == "zh":
            return f"{d.year}年{d.month}月{d.day}日"
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"

    def date_time(self, when: datetime | None) -> str:
        """The one date format of the language, with the time: 2026年11月28日 15:49 or
        28 Nov 2026, 15:49."""
        if when is None:
            return "—"
        d = when.astimezone(CST)
        sep = " " if self.lang == "zh" else ", "
        return f"{self.date(d)}{sep}{d:%H:%M}"

    def count(self, key: str, n: int, **fields: object) -> str:
        """``key`` with ``n`` in it; in English the ``key.one`` singular when n == 1."""
        if n == 1 and f"{key}.one" in TEXT:
            return self(f"{key}.one", n=n, **fields)
        return self(key, n=n, **fields)

    def duration(self, span: timedelta) -> str:
        """The largest whole unit that is not an understatement: 24 小时, 30 seconds."""
        seconds = max(1, math.ceil(span.total_seconds()))
        if seconds >= 3600:
            return self.count("dur.hours", math.ceil(seconds / 3600))
        if seconds >= 60:
            return self.count("dur.minutes", math.ceil(seconds / 60))
        return self.count("dur.seconds", seconds)

    def promise(self, deadline: timedelta | None) -> str:
        """What the carrier can promise up front: usually seconds, never past the deadline."""
        if deadline is None:
            return self("promise.unknown")
        return self("promise", duration=self.duration(deadline))

    def parts(self, states: list[str]) -> str:
        """已解绑 4 个 · 拒绝 1 个 · 处理中 1 个, leaving out what is zero."""
        out = []
        for state in ("DONE", "REJECTED", "OVERDUE"):
            if n := states.count(state):
                out.append(self(f"part.{state}", n=n))
        if still := sum(s not in SETTLED for s in states):
            out.append(self("part.open", n=still))
        return (" · " if self.lang == "zh" else ", ").join(out)

    def category(self, category: str) -> str:
        # The registry's own vocabulary and labels (numbind.protocol.categories).
        return categories.label(category, self.lang)

    def state(self, state: str) -> str:
        entry = TEXT.get(f"state.{state}")
        return entry[self._i] if entry else state

    def accounts(self, n: int) -> str:
        return self.count("me.accounts", n)

    def names(self, names: list[str]) -> str:
        return ("、" if self.lang == "zh" else ", ").join(names)
