"""What the Merkle tests share: an independent reference tree hash, and a flipped byte."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def reference_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 written out recursively over leaf hashes, sharing no code
    with the module under test."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    left, right = reference_mth(leaves[:k]), reference_mth(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def flip(data: bytes, pos: int, xor: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ xor]) + data[pos + 1 :]
