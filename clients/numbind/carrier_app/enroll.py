"""Subscribers for the carrier app from a file: `--enroll FILE`.

The app signs in only numbers its store holds under an ID; a carrier's own systems put them
there (`Store.enroll`). For a first run without them, a CSV with the header
`id_number,phone,tenure_start` (any order): the subscriber's ID number, the number (with
`--region`'s rules) and when this subscriber got it (RFC 3339 with an offset, or a date
alone: 00:00 in the region's time zone). Errors name the file's line, never the number.
"""

from __future__ import annotations

import csv
from pathlib import Path

from numbind.carrier_app.store import Store
from numbind.sdk.dates import parse_time
from numbind.sdk.phone import to_e164

__all__ = ["enroll_file"]

_FIELDS = {"id_number", "phone", "tenure_start"}


def enroll_file(store: Store, path: Path, region: str) -> int:
    """Enroll every row of `path`; the count. ValueError ("FILE line N: ...") on a bad row,
    after the rows before it."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = {(name or "").strip() for name in reader.fieldnames or ()}
        if not header >= _FIELDS:
            raise ValueError(
                f"{path} line 1: want the header id_number,phone,tenure_start, "
                f"missing {', '.join(sorted(_FIELDS - header))}"
            )
        count = 0
        for row in reader:
            line = reader.line_num
            cells = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            try:
                e164 = to_e164(cells["phone"], region=region)
            except ValueError:
                raise ValueError(f"{path} line {line}: phone: not a valid number") from None
            try:
                store.enroll(cells["id_number"], e164, parse_time(cells["tenure_start"], region))
            except ValueError as exc:
                raise ValueError(f"{path} line {line}: {exc}") from None
            count += 1
    return count
