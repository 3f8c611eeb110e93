"""The one bucket fold (numbind.protocol.digest.fold) that registry and SDK share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from numbind.protocol.digest import DIGEST_BYTES, MAX_BUCKET_BITS, fold, xor

SIZE = 1 << MAX_BUCKET_BITS

bindings = st.lists(
    st.tuples(st.integers(0, SIZE - 1), st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES)),
    max_size=50,
)


@given(bindings, st.integers(0, MAX_BUCKET_BITS))
def test_fold_is_the_per_binding_definition(items: list[tuple[int, bytes]], bits: int) -> None:
    counts, digests = [0] * SIZE, [0] * SIZE
    want: dict[int, tuple[int, bytes]] = {}
    for b16, digest in items:
        counts[b16] += 1
        digests[b16] ^= int.from_bytes(digest, "big")
        bucket = b16 >> (MAX_BUCKET_BITS - bits)
        n, d = want.get(bucket, (0, bytes(DIGEST_BYTES)))
        want[bucket] = (n + 1, xor(d, digest))
    got = fold(counts, digests, bits)
    assert [b for b, _, _ in got] == sorted(want)  # non-empty buckets, in order
    assert {b: (n, d) for b, n, d in got} == want


def test_fold_refuses_what_it_cannot_fold() -> None:
    with pytest.raises(ValueError, match="bucket_bits: got 17"):
        fold([0] * SIZE, [0] * SIZE, 17)
    with pytest.raises(ValueError, match="want 65536"):
        fold([0] * 10, [0] * 10, 4)
