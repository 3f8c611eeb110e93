"""Test tokens: random valid ones (canonical, non-identity ristretto255 encodings), as the
registry accepts only those."""

from __future__ import annotations

import os

from numbind.protocol import voprf


def random_token() -> bytes:
    return voprf.hash_to_group(os.urandom(16), voprf.MODE_VOPRF)


def token_in_bucket(bucket16: int) -> bytes:
    """A random valid token whose 16-bit bucket (protocol.digest.bucket16) is `bucket16`.

    About one random even, below-2^255 encoding in four is a valid element."""
    while True:
        raw = bytearray(os.urandom(32))
        raw[0] &= 0xFE
        raw[31] &= 0x7F
        raw[1:3] = bucket16.to_bytes(2, "big")
        try:
            return voprf.deserialize_element(bytes(raw))
        except voprf.DeserializeError:
            continue
