"""A log entry's canonical bytes (what its commitment is over) never change: the encoder
built once gives exactly json.dumps with the canonical options, for any entry."""

from __future__ import annotations

import json

import pytest
from numbind.protocol import log_entries
from numbind.protocol.log_entries import EntryError, canonical


@pytest.mark.parametrize(
    "entry",
    [
        {"t": "ack", "order": "o-1", "platform": "p", "state": "DONE", "outcome": "UNBOUND"},
        {"t": "order", "id": "x", "tenure_start_us": None, "kind": "REVOKE", "z": 1, "a": 2},
        {"t": "revocation", "carrier": "中国移动", "orders": 3, "nested": {"b": [1, 2], "a": ""}},
        {"t": "lifecycle", "carrier": 'q"\\\n\t\x00\x7f\u2014\U0001f600', "applied": True},
        {"t": "key", "public_key": "ab" * 32, "previous": None, "n": -(2**70), "f": 1.5},
        {"t": "ack", "b": False, "e": [], "d": {}, "x": [None, "y", {"z": 0}]},
    ],
)
def test_canonical_is_sorted_compact_ascii_json(
    entry: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    want = json.dumps({"v": 1, **entry}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical(entry) == want.encode()
    # The same bytes without the C encoder (an interpreter that has none).
    monkeypatch.setattr(log_entries, "_C_ENCODE", None)
    assert canonical(entry) == want.encode()


def test_an_unknown_entry_type_is_refused() -> None:
    with pytest.raises(EntryError):
        canonical({"t": "other"})
