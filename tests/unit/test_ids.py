"""domain.ids: batch-minted order ids are uuid4 text, exactly as `str(uuid.uuid4())` writes it."""

from __future__ import annotations

import uuid

from numbind.registry.domain.ids import uuid4_texts


def test_each_is_a_version_4_rfc4122_uuid_in_canonical_text() -> None:
    texts = uuid4_texts(2_000)
    assert len(texts) == 2_000
    for text in texts:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case 8-4-4-4-12, what validate accepts


def test_ids_are_distinct_within_and_across_batches() -> None:
    first, second = uuid4_texts(1_000), uuid4_texts(1_000)
    assert len(set(first) | set(second)) == 2_000


def test_empty_batch() -> None:
    assert uuid4_texts(0) == []
