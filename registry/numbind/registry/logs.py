"""Structured (JSON lines) logging that cannot carry a phone number.

The registry never receives numbers, so none should reach a log; the redaction filter is
defence in depth against a number smuggled in through a free-text field (a reason, a name).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# E.164 with a plus, or a bare Chinese mobile number (11 digits starting 1[3-9]).
_PHONE = re.compile(r"\+\d[\d\- ]{5,17}\d|(?<!\d)1[3-9]\d{9}(?!\d)")


def redact(text: str) -> str:
    return _PHONE.sub("[redacted-number]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: redact(str(v)) for k, v in extra.items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
