"""Binding files for ``numbind platform``: CSV or JSON Lines, streamed one row at a time.

CSV has a header naming at least ``phone,account_id,bound_at,kind`` (any order, extra columns
ignored), separated by commas, or by semicolons or tabs (read from the header); JSON Lines
has one object a line with the same keys. ``bound_at`` is RFC 3339 with an offset
(``2024-05-01T08:00:00+08:00`` or ``...Z``); ``kind`` is LOGIN, RECOVERY, PAYMENT,
NOTIFICATION or OTHER in any case. Blank lines are skipped.

Unlike a date typed on the command line, a date alone is refused in a file: an export's
``bound_at`` read as 00:00 would date a binding made on the day of a reissue before the new
tenure, and the registry would revoke the new holder's own binding.

A bad row becomes a ``RowError`` naming its line, the field and the reason. Messages never
quote a value: a phone number shifted into the wrong column must not reach a log either.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from numbind.sdk.model import Kind, Row, bound_at_problem
from numbind.sdk.phone import DEFAULT_REGION, InvalidNumber, to_e164

__all__ = [
    "FIELDS",
    "FileFormatError",
    "Format",
    "InvalidField",
    "RowError",
    "csv_delimiter",
    "delimiter_name",
    "detect_format",
    "numbered_rows",
    "read_records",
    "read_rows",
    "text_field",
]

Format = Literal["csv", "jsonl"]
FIELDS = ("phone", "account_id", "bound_at", "kind")
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SNIFF_BYTES = 64 * 1024


class FileFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, bad header)."""


@dataclass(frozen=True)
class RowError:
    """Why the row starting at ``line`` (1-based, counting the CSV header) was refused."""

    line: int
    field: str  # one of FIELDS, or "row" for the record as a whole
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class InvalidField(Exception):
    """Raised by record converters: `field` is refused for `reason` (never the value)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason


def detect_format(path: Path, hint: str | None = None) -> Format:
    """``hint`` if given, else the extension, else the first non-blank byte (``{``: JSONL)."""
    if hint is not None:
        if hint not in ("csv", "jsonl"):
            raise FileFormatError(f"format: got {hint!r}, want csv or jsonl")
        return "csv" if hint == "csv" else "jsonl"
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "csv"


def read_rows(
    path: Path,
    fmt: Format | None = None,
    *,
    region: str = DEFAULT_REGION,
    now: datetime | None = None,
) -> Iterator[Row | RowError]:
    """Each row of the file in order: a Row (phone already in E.164) or a RowError.

    Raises FileFormatError for problems that concern the whole file (a CSV header without
    the required columns).
    """
    for _, item in numbered_rows(path, fmt, region=region, now=now):
        yield item


def numbered_rows(
    path: Path,
    fmt: Format | None = None,
    *,
    region: str = DEFAULT_REGION,
    now: datetime | None = None,
) -> Iterator[tuple[int, Row | RowError]]:
    """As read_rows, each with the file line it starts on."""
    for line, record in read_records(path, FIELDS, fmt):
        if isinstance(record, RowError):
            yield line, record
            continue
        try:
            yield line, _row(record, region, now)
        except InvalidField as bad:
            yield line, RowError(line, bad.field, bad.reason)


def read_records(
    path: Path, fields: Sequence[str], fmt: Format | None = None
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line, record) for each CSV row or JSON Lines object, or a RowError for a record that
    is not even well-formed. CSV headers must name every one of `fields`."""
    fmt = fmt or detect_format(path)
    # surrogateescape: a non-UTF-8 byte fails its own row, not the whole file.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        records = _csv_records(path, fh, fields) if fmt == "csv" else _jsonl_records(fh)
        for line, record in records:
            if isinstance(record, InvalidField):
                yield line, RowError(line, record.field, record.reason)
            else:
                yield line, record


_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def csv_delimiter(path: Path, required: Sequence[str] = FIELDS) -> str:
    """The delimiter a CSV file's header uses: a comma, or a semicolon or tab when that is
    what splits the header into the required columns (spreadsheets in many locales write
    semicolons). FileFormatError, with a hint, when none does."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        return _sniff(path, fh, required)


def delimiter_name(delimiter: str) -> str:
    return _DELIMITERS.get(delimiter, repr(delimiter))


def _sniff(path: Path, fh: Any, required: Sequence[str]) -> str:
    line = 0
    for text in fh:
        line += 1
        if text.strip():
            break
    else:
        raise FileFormatError(f"{path}: empty file; want a CSV header {','.join(required)}")
    fh.seek(0)
    best: tuple[int, str, list[str]] = (-1, ",", [])
    for delimiter in _DELIMITERS:
        try:
            names = [n.strip().lower() for n in next(csv.reader([text], delimiter=delimiter))]
        except csv.Error:
            continue
        found = sum(f in names for f in required)
        if found == len(required):
            return delimiter
        if found > best[0]:
            best = (found, delimiter, names)
    _, delimiter, names = best
    missing = [f for f in required if f not in names]
    how = "" if delimiter == "," else f" (read as {_DELIMITERS[delimiter]}-separated)"
    raise FileFormatError(
        f"{path}: line {line}: CSV header{how} lacks {', '.join(missing)}; want "
        f"{','.join(required)} in any order, separated by commas, semicolons or tabs"
    )


def _csv_records(
    path: Path, fh: Any, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, Any] | InvalidField]]:
    reader = csv.reader(fh, strict=True, delimiter=_sniff(path, fh, required))
    header: list[str] | None = None
    width = 0
    columns: dict[str, int] = {}
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # The csv module's message may quote the text; give the line only.
            yield start, InvalidField("row", "malformed CSV (unbalanced quotes?)")
            continue
        line = start
        if not fields or fields == [""]:
            continue
        if header is None:
            header = [name.strip().lower() for name in fields]
            missing = [f for f in required if f not in header]
            if missing:
                raise FileFormatError(
                    f"{path}: line {line}: CSV header lacks {', '.join(missing)}; "
                    f"want {','.join(required)}"
                )
            duplicated = sorted({f for f in required if header.count(f) > 1})
            if duplicated:
                raise FileFormatError(
                    f"{path}: line {line}: CSV header names {', '.join(duplicated)} twice"
                )
            width = len(header)
            columns = {f: header.index(f) for f in required}
            continue
        if len(fields) != width:
            yield (
                line,
                InvalidField("row", f"got {len(fields)} fields, want {width} (as the header)"),
            )
            continue
        yield line, {f: fields[i] for f, i in columns.items()}
    if header is None:
        raise FileFormatError(f"{path}: empty file; want a CSV header {','.join(required)}")


def _jsonl_records(fh: Any) -> Iterator[tuple[int, dict[str, Any] | InvalidField]]:
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError:
            yield line, InvalidField("row", "not valid JSON")
            continue
        if not isinstance(value, dict):
            yield line, InvalidField("row", "not a JSON object")
            continue
        yield line, value


def text_field(record: dict[str, Any], name: str, *, allow_int: bool = False) -> str:
    """A record's non-empty text field (integers allowed for phone columns), stripped."""
    value = record.get(name)
    if value is None:
        raise InvalidField(name, "missing")
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        want = "a string or an integer" if allow_int else "a string"
        raise InvalidField(name, f"got a JSON {type(value).__name__}, want {want}")
    value = value.strip()
    if not value:
        raise InvalidField(name, "missing")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(name, "not UTF-8") from None
    return value


def _shown(value: str) -> str:
    """A refused value fit to quote: a kind is a word, but a value with several digits may
    be a phone number in the wrong column, and that is never echoed."""
    if sum(c.isdigit() for c in value) >= 4:
        return "a value with digits (a number in the wrong column?)"
    return repr(value if len(value) <= 24 else value[:24] + "…")


def _row(record: dict[str, Any], region: str, now: datetime | None) -> Row:
    phone = text_field(record, "phone", allow_int=True)
    try:
        e164 = to_e164(phone, 0, region)
    except InvalidNumber as exc:
        raise InvalidField("phone", exc.reason) from None
    account_id = text_field(record, "account_id", allow_int=True)

    try:
        bound_at = datetime.fromisoformat(text_field(record, "bound_at"))
    except ValueError:
        raise InvalidField("bound_at", "not an RFC 3339 time") from None
    problem = bound_at_problem(bound_at, now)
    if problem is not None:
        raise InvalidField("bound_at", problem)

    kind_text = text_field(record, "kind")
    try:
        kind = Kind.parse(kind_text)
    except ValueError:
        raise InvalidField(
            "kind", f"got {_shown(kind_text)}, want one of {', '.join(k.name for k in Kind)}"
        ) from None
    try:
        return Row(e164, account_id, bound_at, kind)
    except ValueError as exc:  # Row's own checks; their messages name fields, not values
        raise InvalidField("row", str(exc)) from None
