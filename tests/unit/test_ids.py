"""domain.ids: batch-minted order and revocation ids are RFC 9562 version-7 UUID text, as
`str(uuid.UUID(...))` writes it, stamped with the time they were made."""

from __future__ import annotations

import time
import uuid

import pytest
from numbind.registry.domain.ids import uuid7_texts
from numbind.sdk.model import order_reference


def _ms(text: str) -> int:
    """The Unix milliseconds in a version-7 UUID's first 48 bits (RFC 9562 5.7)."""
    return uuid.UUID(text).int >> 80


def test_each_is_a_version_7_rfc_variant_uuid_in_canonical_text() -> None:
    before = time.time_ns() // 1_000_000
    texts = uuid7_texts(2_000)
    after = time.time_ns() // 1_000_000
    assert len(texts) == 2_000
    for text in texts:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case 8-4-4-4-12, what validate accepts
        assert before <= _ms(text) <= after


def test_the_stamp_is_the_given_time_and_the_rest_is_random() -> None:
    stamp = 0x0123456789AB
    texts = uuid7_texts(500, now_ms=stamp)
    assert {_ms(t) for t in texts} == {stamp}
    assert all(t.startswith("01234567-89ab-7") for t in texts)
    # 74 random bits each: every id distinct, and the bits below the stamp vary.
    assert len(set(texts)) == 500
    assert len({uuid.UUID(t).int & ((1 << 62) - 1) for t in texts}) == 500


def test_later_ids_sort_after_earlier_ones() -> None:
    """What they are for: new keys go to the right edge of an index."""
    first = uuid7_texts(100, now_ms=1_700_000_000_000)
    second = uuid7_texts(100, now_ms=1_700_000_000_001)
    assert max(first) < min(second)
    assert uuid7_texts(1)[0] > max(second)


def test_ids_are_distinct_within_and_across_batches() -> None:
    first, second = uuid7_texts(1_000), uuid7_texts(1_000)
    assert len(set(first) | set(second)) == 2_000


def test_empty_batch_and_a_time_out_of_range() -> None:
    assert uuid7_texts(0) == []
    with pytest.raises(ValueError, match="now_ms"):
        uuid7_texts(1, now_ms=1 << 48)
    with pytest.raises(ValueError, match="now_ms"):
        uuid7_texts(1, now_ms=-1)


def test_the_orders_of_one_millisecond_have_distinct_references() -> None:
    # A reissue's chunk mints thousands of order ids in one millisecond; the short reference
    # a holder quotes to a platform must still tell them apart (it once took the first 12
    # digits: the timestamp, the same for all of them).
    ids = uuid7_texts(5_000, now_ms=1_790_000_000_000)
    references = {order_reference(i) for i in ids}
    assert len(references) == len(ids)
    assert all(len(r) == 14 and r.count("-") == 2 for r in references)
