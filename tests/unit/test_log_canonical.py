"""A log entry's canonical bytes (what its commitment is over) never change: the encoder
built once gives exactly json.dumps with the canonical options, for any entry."""

from __future__ import annotations

import json

import pytest
from numbind.protocol.log_entries import EntryError, canonical


@pytest.mark.parametrize(
    "entry",
    [
        {"t": "ack", "order": "o-1", "platform": "p", "state": "DONE", "outcome": "UNBOUND"},
        {"t": "order", "id": "x", "tenure_start_us": None, "kind": "REVOKE", "z": 1, "a": 2},
        {"t": "revocation", "carrier": "中国移动", "orders": 3, "nested": {"b": [1, 2], "a": ""}},
    ],
)
def test_canonical_is_sorted_compact_ascii_json(entry: dict[str, object]) -> None:
    want = json.dumps({"v": 1, **entry}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical(entry) == want.encode()


def test_an_unknown_entry_type_is_refused() -> None:
    with pytest.raises(EntryError):
        canonical({"t": "other"})
