"""RFC 9497's suite constants and hashing for ristretto255-SHA512: the context string,
RFC 9380 expand_message_xmd, HashToGroup and HashToScalar.

The OPRF/VOPRF protocol (``numbind.protocol.voprf``) and its batched DLEQ proof
(``numbind.protocol.dleq``) are both built from these.
"""

from __future__ import annotations

import hashlib
import hmac

from numbind.protocol.ristretto import IDENTITY, InvalidInputError, from_hash, scalar_reduce

__all__ = [
    "MODE_OPRF",
    "MODE_VOPRF",
    "SHA512_BLOCK",
    "SUITE_ID",
    "context_string",
    "expand_message_xmd",
    "hash_to_group",
    "hash_to_scalar",
    "i2osp",
    "prefixed",
]

SUITE_ID = "ristretto255-SHA512"
MODE_OPRF = 0x00
MODE_VOPRF = 0x01

_SHA512_OUT = 64
SHA512_BLOCK = 128


def i2osp(value: int, length: int) -> bytes:
    """RFC 8017 I2OSP: ``value`` big-endian in ``length`` bytes, or InvalidInputError."""
    if not 0 <= value < 1 << (8 * length):
        raise InvalidInputError(f"value {value} does not fit in {length} byte(s)")
    return value.to_bytes(length, "big")


def prefixed(data: bytes) -> bytes:
    """``I2OSP(len(data), 2) || data``."""
    return i2osp(len(data), 2) + data


def _check_mode(mode: int) -> None:
    if mode not in (MODE_OPRF, MODE_VOPRF):
        raise InvalidInputError(f"unsupported mode {mode!r}; expected 0x00 (OPRF) or 0x01 (VOPRF)")


def context_string(mode: int) -> bytes:
    """Return ``"OPRFV1-" || I2OSP(mode, 1) || "-" || SUITE_ID``."""
    _check_mode(mode)
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE_ID.encode("ascii")


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512."""
    ell = -(-len_in_bytes // _SHA512_OUT)
    if len_in_bytes <= 0 or ell > 255 or len_in_bytes > 65535:
        raise InvalidInputError(f"expand_message_xmd: invalid output length {len_in_bytes}")
    if len(dst) > 255:
        raise InvalidInputError("expand_message_xmd: DST longer than 255 bytes")
    dst_prime = dst + i2osp(len(dst), 1)
    b_0 = hashlib.sha512(
        bytes(SHA512_BLOCK) + msg + i2osp(len_in_bytes, 2) + b"\x00" + dst_prime
    ).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + i2osp(i, 1) + dst_prime).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


def hash_to_group(msg: bytes, mode: int) -> bytes:
    """HashToGroup; raises InvalidInputError if ``msg`` maps to the identity."""
    dst = b"HashToGroup-" + context_string(mode)
    element: bytes = from_hash(expand_message_xmd(msg, dst, 64))
    if hmac.compare_digest(element, IDENTITY):
        raise InvalidInputError("input hashes to the identity element")
    return element


def hash_to_scalar(msg: bytes, mode: int, dst: bytes | None = None) -> bytes:
    """HashToScalar: 64 uniform bytes reduced mod L (default DST ``HashToScalar-``||ctx)."""
    if dst is None:
        dst = b"HashToScalar-" + context_string(mode)
    return scalar_reduce(expand_message_xmd(msg, dst, 64))
