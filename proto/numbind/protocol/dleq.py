"""RFC 9497 §2.2 batched DLEQ proofs (ristretto255-SHA512): the proof a VOPRF server
attaches to a batch, that ``B = k*A`` and ``D[i] = k*C[i]`` for one secret ``k``.

The VOPRF protocol that uses them is ``numbind.protocol.voprf``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from numbind.protocol.oprf_hashing import (
    MODE_VOPRF,
    SHA512_BLOCK,
    context_string,
    hash_to_scalar,
    i2osp,
    prefixed,
)
from numbind.protocol.ristretto import (
    GENERATOR,
    IDENTITY,
    SCALAR_BYTES,
    DeserializeError,
    InvalidInputError,
    VerifyError,
    VoprfError,
    deserialize_element,
    deserialize_scalar,
    mul,
    mul_base,
    mul_base_or_identity,
    mul_or_identity,
    nonzero_scalar,
    point_add,
    scalar_mul,
    scalar_random,
    scalar_reduce,
    scalar_sub,
)

__all__ = [
    "PROOF_BYTES",
    "check_batch",
    "generate_proof",
    "generate_proof_unchecked",
    "verify_proof",
]

PROOF_BYTES = 2 * SCALAR_BYTES


def _composites(
    k: bytes | None, b: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int
) -> tuple[bytes, bytes]:
    """ComputeCompositesFast when ``k`` is given, else ComputeComposites."""
    seed_dst = b"Seed-" + context_string(mode)
    seed = hashlib.sha512(prefixed(b) + prefixed(seed_dst)).digest()
    # The loop runs once per evaluated element on the server's hot path, so HashToScalar is
    # inlined with its constants hoisted: expand_message_xmd to 64 bytes is one SHA-512
    # output (ell = 1), then a reduction. Elements are 32 bytes, hence the fixed prefixes.
    # The RFC vectors (proofs included) pin this to the spec bit for bit.
    seed_prefix = prefixed(seed)
    dst = b"HashToScalar-" + context_string(mode)
    dst_prime = dst + i2osp(len(dst), 1)
    head, tail = bytes(SHA512_BLOCK), b"\x00\x40\x00" + dst_prime
    one = b"\x01" + dst_prime
    m = z = IDENTITY
    for i, (ci, di) in enumerate(zip(c, d, strict=True)):
        transcript = (
            seed_prefix + i.to_bytes(2, "big") + b"\x00\x20" + ci + b"\x00\x20" + di + b"Composite"
        )
        b_0 = hashlib.sha512(head + transcript + tail).digest()
        w = scalar_reduce(hashlib.sha512(b_0 + one).digest())
        # w == 0 has negligible probability but is not an error: use the
        # identity-tolerant multiply and let point addition absorb it.
        m = point_add(mul_or_identity(w, ci), m)
        if k is None:
            z = point_add(mul_or_identity(w, di), z)
    if k is not None:
        z = mul_or_identity(k, m)
    return m, z


def _challenge(b: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> bytes:
    transcript = b"".join(prefixed(x) for x in (b, m, z, t2, t3)) + b"Challenge"
    return hash_to_scalar(transcript, mode)


def check_batch(c: Sequence[bytes], d: Sequence[bytes]) -> None:
    if not c or len(c) != len(d):
        raise InvalidInputError(f"batch sizes must be equal and non-zero ({len(c)}, {len(d)})")


def generate_proof_unchecked(
    k: bytes, a: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes], r: bytes, mode: int
) -> bytes:
    m, z = _composites(k, b, c, d, mode)
    t2 = mul_base(r) if a == GENERATOR else mul(r, a)
    t3 = mul_or_identity(r, m)
    if IDENTITY in (m, z, t3):
        # SerializeElement is undefined for the identity; only reachable with
        # negligible probability for honest inputs.
        raise VoprfError("proof generation hit the identity element; retry")
    ch = _challenge(b, m, z, t2, t3, mode)
    s = scalar_sub(r, scalar_mul(ch, k))
    return ch + s


def generate_proof(
    k: bytes,
    a: bytes,
    b: bytes,
    c: Sequence[bytes],
    d: Sequence[bytes],
    r: bytes | None = None,
    mode: int = MODE_VOPRF,
) -> bytes:
    """RFC 9497 §2.2.1 batched DLEQ proof that ``B = k*A`` and ``D[i] = k*C[i]``.

    ``r`` is the ProofRandomScalar (random when None). Returns ``c || s``.
    """
    k = nonzero_scalar(k, "secret key")
    a, b = deserialize_element(a), deserialize_element(b)
    check_batch(c, d)
    cs = [deserialize_element(x) for x in c]
    ds = [deserialize_element(x) for x in d]
    rr = scalar_random() if r is None else nonzero_scalar(r, "proof random scalar")
    return generate_proof_unchecked(k, a, b, cs, ds, rr, mode)


def _verify_dleq(
    a: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes], proof: bytes, mode: int
) -> None:
    if len(proof) != PROOF_BYTES:
        raise DeserializeError(f"proof must be {PROOF_BYTES} bytes, got {len(proof)}")
    ch = deserialize_scalar(proof[:SCALAR_BYTES])
    s = deserialize_scalar(proof[SCALAR_BYTES:])
    m, z = _composites(None, b, c, d, mode)
    # The proof is attacker-controlled, so s or c may be zero: use the
    # identity-tolerant multiplies rather than letting libsodium raise.
    s_a = mul_base_or_identity(s) if a == GENERATOR else mul_or_identity(s, a)
    t2 = point_add(s_a, mul_or_identity(ch, b))
    t3 = point_add(mul_or_identity(s, m), mul_or_identity(ch, z))
    if IDENTITY in (m, z, t2, t3):
        raise VerifyError("proof verification failed (identity in transcript)")
    if not hmac.compare_digest(_challenge(b, m, z, t2, t3, mode), ch):
        raise VerifyError("proof verification failed")


def verify_proof(
    pk: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    proof: bytes,
    *,
    blinded_trusted: bool = False,
) -> None:
    """Check a VOPRF batch proof; raise VerifyError if it does not verify.

    ``blinded_trusted`` skips re-validating blinded elements the caller made itself with
    ``blind``; the evaluated elements (the server's) are always validated.
    """
    check_batch(blinded, evaluated)
    b = deserialize_element(pk)
    cs = (
        [bytes(x) for x in blinded]
        if blinded_trusted
        else [deserialize_element(x) for x in blinded]
    )
    ds = [deserialize_element(x) for x in evaluated]
    _verify_dleq(GENERATOR, b, cs, ds, bytes(proof), MODE_VOPRF)
