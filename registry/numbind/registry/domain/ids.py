"""Random (version 4) UUID text, many at a time.

A REISSUED batch creates an order, with a fresh uuid4 id, per binding: `str(uuid.uuid4())`
costs ~3 us each (a urandom call, an int, a UUID object, its formatting), ~0.5 us here
from one urandom for the whole batch. The text is exactly uuid4's: version nibble 4,
RFC 4122 variant, lower-case 8-4-4-4-12 hex.
"""

from __future__ import annotations

import os


def uuid4_texts(n: int) -> list[str]:
    raw = bytearray(os.urandom(16 * n))
    # Byte 6's high nibble is the version (4); byte 8's top two bits the variant (10).
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]
