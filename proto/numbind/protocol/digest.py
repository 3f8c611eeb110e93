"""Reconciliation digests, computed the same way by the registry and by platforms.

A bucket's digest is the XOR of SHA-256 over each active binding's canonical encoding, so it
does not depend on order and can be updated one binding at a time. Buckets are the top
`bits` bits (0..16; 0 means one bucket holding everything) of the token's second and third
bytes: a token is a canonical ristretto255 encoding, whose first byte is always even (its
lowest bit is the sign, and canonical encodings are non-negative), so buckets taken from
the first byte would leave half of them empty from 8 bits on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_BUCKET_BITS = 16
DIGEST_BYTES = 32
EMPTY_DIGEST = bytes(DIGEST_BYTES)
_DOMAIN = b"numbind-binding-v1\x00"


def binding_digest(
    key_id: str, token: bytes, account_ref: bytes, bound_us: int, kind: int
) -> bytes:
    """SHA-256 of (domain, key_id, token, account_ref, bound_at in microseconds, kind).

    Every variable-length part is length-prefixed, so no two bindings share an encoding.
    """
    kid = key_id.encode()
    data = b"".join(
        (
            _DOMAIN,
            len(kid).to_bytes(1, "big"),
            kid,
            len(token).to_bytes(1, "big"),
            token,
            len(account_ref).to_bytes(1, "big"),
            account_ref,
            bound_us.to_bytes(8, "big", signed=True),
            kind.to_bytes(1, "big"),
        )
    )
    return hashlib.sha256(data).digest()


def bucket16(token: bytes) -> int:
    """The token's finest bucket: its second and third bytes, big-endian."""
    return int.from_bytes(token[1:3], "big")


def bucket_of(token: bytes, bits: int) -> int:
    if not 0 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits: got {bits}, want 0..{MAX_BUCKET_BITS}")
    return bucket16(token) >> (MAX_BUCKET_BITS - bits)


def bucket16_range(bucket: int, bits: int) -> tuple[int, int]:
    """The inclusive range of 16-bit buckets that make up `bucket` at `bits` bits."""
    shift = MAX_BUCKET_BITS - bits
    return bucket << shift, ((bucket + 1) << shift) - 1


def fold(counts: Sequence[int], digests: Sequence[int], bits: int) -> list[tuple[int, int, bytes]]:
    """Fold the finest buckets into buckets of ``bits`` bits: (bucket, count, digest) for
    every non-empty one, in bucket order.

    ``counts[b16]`` and ``digests[b16]`` (the XOR of its bindings' digests, as an int) are
    indexed by 16-bit bucket. Registry and SDK both keep these 2**16 accumulators and call
    this, so the two sides cannot fold differently.
    """
    if not 0 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits: got {bits}, want 0..{MAX_BUCKET_BITS}")
    if len(counts) != 1 << MAX_BUCKET_BITS or len(digests) != len(counts):
        raise ValueError(f"fold: want {1 << MAX_BUCKET_BITS} counts and digests")
    shift = MAX_BUCKET_BITS - bits
    folded: dict[int, list[int]] = {}
    for b16, n in enumerate(counts):
        if n:
            slot = folded.setdefault(b16 >> shift, [0, 0])
            slot[0] += n
            slot[1] ^= digests[b16]
    # Ascending 16-bit buckets fold to ascending buckets: insertion order is bucket order.
    return [(b, n, x.to_bytes(DIGEST_BYTES, "big")) for b, (n, x) in folded.items()]


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(DIGEST_BYTES, "big")
