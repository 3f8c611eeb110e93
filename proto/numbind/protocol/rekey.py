"""Token re-keying: ``Delta = k_new / k_old`` maps every token under the old key to the same
number's token under the new one (``Delta * k_old*H(x) = k_new*H(x)``), one multiplication
per token. The token service computes Delta; the store only ever receives it.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbind.protocol.ristretto import (
    deserialize_element,
    mul,
    nonzero_scalar,
    scalar_invert,
    scalar_mul,
)

__all__ = ["compose_deltas", "invert_delta", "rekey", "rekey_delta", "rekey_many"]


def rekey_delta(old_sk: bytes, new_sk: bytes) -> bytes:
    """``Delta = new_sk / old_sk``, so that ``Delta * (old_sk*H(x)) = new_sk*H(x)``.

    Delta alone reveals neither key: for a fresh uniform ``new_sk`` it is itself uniform
    and independent of ``old_sk`` (a one-time pad in the scalar group).
    """
    old = nonzero_scalar(old_sk, "old secret key")
    new = nonzero_scalar(new_sk, "new secret key")
    return scalar_mul(new, scalar_invert(old))


def compose_deltas(first: bytes, then: bytes) -> bytes:
    """The delta that applies ``first`` and then ``then`` (keys A->B, B->C give A->C)."""
    return scalar_mul(nonzero_scalar(then, "delta"), nonzero_scalar(first, "delta"))


def invert_delta(delta: bytes) -> bytes:
    """The delta back (new key -> old key)."""
    return scalar_invert(nonzero_scalar(delta, "delta"))


def rekey(delta: bytes, token: bytes) -> bytes:
    """``delta * token`` for one validated token."""
    return mul(nonzero_scalar(delta, "delta"), deserialize_element(token))


def rekey_many(delta: bytes, tokens: Sequence[bytes]) -> list[bytes]:
    """``delta * token`` for tokens already validated (read back from the store): one
    multiplication each, nothing else, as the store re-key's inner loop needs."""
    d = nonzero_scalar(delta, "delta")
    return [mul(d, t) for t in tokens]
