"""RFC 9497 OPRF (mode 0x00) and VOPRF (mode 0x01), ciphersuite ristretto255-SHA512.

Group arithmetic is libsodium's ristretto255 via ``rbcl``. Elements and scalars are
passed around as their canonical 32-byte encodings; scalars are little-endian.

numbind's token is the *unblinded element* ``N = k*HashToGroup(x)``, the value the RFC's
Finalize hashes last (``finalize_hash``): a group element can be re-keyed with one
multiplication (``numbind.protocol.rekey``), a hash cannot. Everything the RFC defines stays
here, Finalize included, and reproduces the official vectors byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from numbind.protocol.ristretto import (
    ELEMENT_BYTES,
    SCALAR_BYTES,
    DeriveKeyPairError,
    DeserializeError,
    InvalidInputError,
    VerifyError,
    VoprfError,
    deserialize_element,
    deserialize_scalar,
    invert_scalars,
)
from numbind.protocol.ristretto import GENERATOR as _GENERATOR
from numbind.protocol.ristretto import IDENTITY as _IDENTITY
from numbind.protocol.ristretto import ZERO_SCALAR as _ZERO_SCALAR
from numbind.protocol.ristretto import from_hash as _from_hash
from numbind.protocol.ristretto import mul as _mul
from numbind.protocol.ristretto import mul_base as _mul_base
from numbind.protocol.ristretto import mul_base_or_identity as _mul_base_or_identity
from numbind.protocol.ristretto import mul_or_identity as _mul_or_identity
from numbind.protocol.ristretto import nonzero_scalar as _nonzero_scalar
from numbind.protocol.ristretto import point_add as _point_add
from numbind.protocol.ristretto import scalar_invert as _scalar_invert
from numbind.protocol.ristretto import scalar_mul as _scalar_mul
from numbind.protocol.ristretto import scalar_random as _scalar_random
from numbind.protocol.ristretto import scalar_reduce as _scalar_reduce
from numbind.protocol.ristretto import scalar_sub as _scalar_sub

__all__ = [
    "ELEMENT_BYTES",
    "MODE_OPRF",
    "MODE_VOPRF",
    "OUTPUT_BYTES",
    "PROOF_BYTES",
    "SCALAR_BYTES",
    "SUITE_ID",
    "DeriveKeyPairError",
    "DeserializeError",
    "InvalidInputError",
    "VerifyError",
    "VoprfError",
    "blind",
    "blind_evaluate",
    "context_string",
    "derive_key_pair",
    "deserialize_element",
    "deserialize_scalar",
    "evaluate",
    "evaluate_element",
    "expand_message_xmd",
    "finalize",
    "finalize_hash",
    "generate_key_pair",
    "generate_proof",
    "hash_to_group",
    "hash_to_scalar",
    "invert_scalars",
    "public_key",
    "unblind",
    "unblind_batch",
    "verify_proof",
    "voprf_blind_evaluate",
    "voprf_finalize_batch",
    "voprf_unblind_batch",
]

SUITE_ID = "ristretto255-SHA512"
MODE_OPRF = 0x00
MODE_VOPRF = 0x01
OUTPUT_BYTES = 64
PROOF_BYTES = 2 * SCALAR_BYTES

_SHA512_OUT = 64
_SHA512_BLOCK = 128


def _i2osp(value: int, length: int) -> bytes:
    if not 0 <= value < 1 << (8 * length):
        raise InvalidInputError(f"value {value} does not fit in {length} byte(s)")
    return value.to_bytes(length, "big")


def _prefixed(data: bytes) -> bytes:
    return _i2osp(len(data), 2) + data


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
    dst_prime = dst + _i2osp(len(dst), 1)
    b_0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + msg + _i2osp(len_in_bytes, 2) + b"\x00" + dst_prime
    ).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    out = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest()
        out.append(b_i)
    return b"".join(out)[:len_in_bytes]


def hash_to_group(msg: bytes, mode: int) -> bytes:
    """HashToGroup; raises InvalidInputError if ``msg`` maps to the identity."""
    dst = b"HashToGroup-" + context_string(mode)
    element: bytes = _from_hash(expand_message_xmd(msg, dst, 64))
    if hmac.compare_digest(element, _IDENTITY):
        raise InvalidInputError("input hashes to the identity element")
    return element


def hash_to_scalar(msg: bytes, mode: int, dst: bytes | None = None) -> bytes:
    """HashToScalar: 64 uniform bytes reduced mod L (default DST ``HashToScalar-``||ctx)."""
    if dst is None:
        dst = b"HashToScalar-" + context_string(mode)
    return _scalar_reduce(expand_message_xmd(msg, dst, 64))


def public_key(sk: bytes) -> bytes:
    """Return ``sk * G``."""
    return _mul_base(_nonzero_scalar(sk, "secret key"))


def generate_key_pair() -> tuple[bytes, bytes]:
    """Return a random ``(skS, pkS)``."""
    sk = _scalar_random()  # libsodium never returns zero here
    return sk, _mul_base(sk)


def derive_key_pair(seed: bytes, info: bytes, mode: int) -> tuple[bytes, bytes]:
    """RFC 9497 §3.2.1 DeriveKeyPair; ``seed`` must be 32 bytes."""
    if len(seed) != 32:
        raise InvalidInputError(f"seed must be 32 bytes, got {len(seed)}")
    dst = b"DeriveKeyPair" + context_string(mode)
    derive_input = seed + _prefixed(info)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + _i2osp(counter, 1), mode, dst)
        if not hmac.compare_digest(sk, _ZERO_SCALAR):
            return sk, _mul_base(sk)
    raise DeriveKeyPairError("DeriveKeyPair: no non-zero scalar in 256 attempts")


def blind(input: bytes, mode: int, blind: bytes | None = None) -> tuple[bytes, bytes]:
    """Client Blind: return ``(blind, blind * HashToGroup(input))``.

    ``blind`` fixes the blinding scalar (test vectors only); otherwise it is random.
    """
    # Finalize length-prefixes the input with 2 bytes; fail before the round trip.
    _i2osp(len(input), 2)
    r = _scalar_random() if blind is None else _nonzero_scalar(blind, "blind")
    return r, _mul(r, hash_to_group(input, mode))


def blind_evaluate(sk: bytes, blinded_elements: Sequence[bytes]) -> list[bytes]:
    """Server BlindEvaluate over a batch: ``sk * B`` for each (validated) element."""
    k = _nonzero_scalar(sk, "secret key")
    # Validated non-identity input and non-zero k in a prime-order group: the
    # product is never the identity, so libsodium's refusal cannot trigger.
    return [_mul(k, deserialize_element(b)) for b in blinded_elements]


def finalize_hash(input: bytes, unblinded_element: bytes) -> bytes:
    """The last step of Finalize: ``Hash(len||input || len||N || "Finalize")``."""
    return hashlib.sha512(_prefixed(input) + _prefixed(unblinded_element) + b"Finalize").digest()


def unblind(blind: bytes, evaluated_element: bytes) -> bytes:
    """``blind^-1 * evaluated``: the unblinded element ``k*HashToGroup(input)``."""
    r = _nonzero_scalar(blind, "blind")
    return _mul(_scalar_invert(r), deserialize_element(evaluated_element))


def finalize(input: bytes, blind: bytes, evaluated_element: bytes) -> bytes:
    """Client Finalize (OPRF/VOPRF): unblind, then hash with the input."""
    return finalize_hash(input, unblind(blind, evaluated_element))


def evaluate_element(sk: bytes, input: bytes, mode: int) -> bytes:
    """``sk*HashToGroup(input)``: what a client's unblind yields, computed with the key."""
    k = _nonzero_scalar(sk, "secret key")
    return _mul(k, hash_to_group(input, mode))


def evaluate(sk: bytes, input: bytes, mode: int) -> bytes:
    """Server-side unblinded Evaluate(skS, input)."""
    return finalize_hash(input, evaluate_element(sk, input, mode))


def unblind_batch(blinds: Sequence[bytes], evaluated: Sequence[bytes]) -> list[bytes]:
    """``unblind`` for a batch, sharing one inversion. ``evaluated`` must be validated."""
    if len(blinds) != len(evaluated):
        raise InvalidInputError(f"{len(blinds)} blinds for {len(evaluated)} elements")
    for b in blinds:
        _nonzero_scalar(b, "blind")
    return [_mul(r, e) for r, e in zip(invert_scalars(blinds), evaluated, strict=True)]


def _composites(
    k: bytes | None, b: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int
) -> tuple[bytes, bytes]:
    """ComputeCompositesFast when ``k`` is given, else ComputeComposites."""
    seed_dst = b"Seed-" + context_string(mode)
    seed = hashlib.sha512(_prefixed(b) + _prefixed(seed_dst)).digest()
    # The loop runs once per evaluated element on the server's hot path, so HashToScalar is
    # inlined with its constants hoisted: expand_message_xmd to 64 bytes is one SHA-512
    # output (ell = 1), then a reduction. Elements are 32 bytes, hence the fixed prefixes.
    # The RFC vectors (proofs included) pin this to the spec bit for bit.
    seed_prefix = _prefixed(seed)
    dst = b"HashToScalar-" + context_string(mode)
    dst_prime = dst + _i2osp(len(dst), 1)
    head, tail = bytes(_SHA512_BLOCK), b"\x00\x40\x00" + dst_prime
    one = b"\x01" + dst_prime
    m = z = _IDENTITY
    for i, (ci, di) in enumerate(zip(c, d, strict=True)):
        transcript = (
            seed_prefix + i.to_bytes(2, "big") + b"\x00\x20" + ci + b"\x00\x20" + di + b"Composite"
        )
        b_0 = hashlib.sha512(head + transcript + tail).digest()
        w = _scalar_reduce(hashlib.sha512(b_0 + one).digest())
        # w == 0 has negligible probability but is not an error: use the
        # identity-tolerant multiply and let point addition absorb it.
        m = _point_add(_mul_or_identity(w, ci), m)
        if k is None:
            z = _point_add(_mul_or_identity(w, di), z)
    if k is not None:
        z = _mul_or_identity(k, m)
    return m, z


def _challenge(b: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> bytes:
    transcript = b"".join(_prefixed(x) for x in (b, m, z, t2, t3)) + b"Challenge"
    return hash_to_scalar(transcript, mode)


def _check_batch(c: Sequence[bytes], d: Sequence[bytes]) -> None:
    if not c or len(c) != len(d):
        raise InvalidInputError(f"batch sizes must be equal and non-zero ({len(c)}, {len(d)})")


def _generate_proof(
    k: bytes, a: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes], r: bytes, mode: int
) -> bytes:
    m, z = _composites(k, b, c, d, mode)
    t2 = _mul_base(r) if a == _GENERATOR else _mul(r, a)
    t3 = _mul_or_identity(r, m)
    if _IDENTITY in (m, z, t3):
        # SerializeElement is undefined for the identity; only reachable with
        # negligible probability for honest inputs.
        raise VoprfError("proof generation hit the identity element; retry")
    ch = _challenge(b, m, z, t2, t3, mode)
    s = _scalar_sub(r, _scalar_mul(ch, k))
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
    k = _nonzero_scalar(k, "secret key")
    a, b = deserialize_element(a), deserialize_element(b)
    _check_batch(c, d)
    cs = [deserialize_element(x) for x in c]
    ds = [deserialize_element(x) for x in d]
    rr = _scalar_random() if r is None else _nonzero_scalar(r, "proof random scalar")
    return _generate_proof(k, a, b, cs, ds, rr, mode)


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
    s_a = _mul_base_or_identity(s) if a == _GENERATOR else _mul_or_identity(s, a)
    t2 = _point_add(s_a, _mul_or_identity(ch, b))
    t3 = _point_add(_mul_or_identity(s, m), _mul_or_identity(ch, z))
    if _IDENTITY in (m, z, t2, t3):
        raise VerifyError("proof verification failed (identity in transcript)")
    if not hmac.compare_digest(_challenge(b, m, z, t2, t3, mode), ch):
        raise VerifyError("proof verification failed")


def voprf_blind_evaluate(
    sk: bytes,
    pk: bytes,
    blinded: Sequence[bytes],
    r: bytes | None = None,
    *,
    prevalidated: bool = False,
) -> tuple[list[bytes], bytes]:
    """VOPRF BlindEvaluateBatch: return ``(evaluated_elements, proof)``.

    ``pk`` must equal ``public_key(sk)`` (not re-derived here, to save a
    multiplication per request); a mismatch yields proofs that fail to verify.
    ``prevalidated`` skips re-checking elements the caller has already passed
    through ``deserialize_element`` (the server does, to name the bad index).
    """
    pk = deserialize_element(pk)
    if prevalidated:
        k = _nonzero_scalar(sk, "secret key")
        evaluated = [_mul(k, bytes(b)) for b in blinded]
    else:
        evaluated = blind_evaluate(sk, blinded)
    _check_batch(blinded, evaluated)
    rr = _scalar_random() if r is None else _nonzero_scalar(r, "proof random scalar")
    blinded_b = [bytes(x) for x in blinded]
    proof = _generate_proof(sk, _GENERATOR, pk, blinded_b, evaluated, rr, MODE_VOPRF)
    return evaluated, proof


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
    _check_batch(blinded, evaluated)
    b = deserialize_element(pk)
    cs = (
        [bytes(x) for x in blinded]
        if blinded_trusted
        else [deserialize_element(x) for x in blinded]
    )
    ds = [deserialize_element(x) for x in evaluated]
    _verify_dleq(_GENERATOR, b, cs, ds, bytes(proof), MODE_VOPRF)


def voprf_finalize_batch(
    inputs: Sequence[bytes],
    blinds: Sequence[bytes],
    evaluated: Sequence[bytes],
    blinded: Sequence[bytes],
    proof: bytes,
    pk: bytes,
) -> list[bytes]:
    """VOPRF FinalizeBatch: verify the proof, then finalize each input."""
    if not len(inputs) == len(blinds) == len(evaluated) == len(blinded):
        raise InvalidInputError("inputs, blinds, evaluated and blinded differ in length")
    verify_proof(pk, blinded, evaluated, proof)
    return [finalize(x, r, e) for x, r, e in zip(inputs, blinds, evaluated, strict=True)]


def voprf_unblind_batch(
    blinds: Sequence[bytes],
    evaluated: Sequence[bytes],
    blinded: Sequence[bytes],
    proof: bytes,
    pk: bytes,
) -> list[bytes]:
    """Verify the batch proof, then unblind: numbind's tokens ``k*HashToGroup(x)``.

    ``blinded`` must be this client's own output of ``blind`` (not re-validated). Client
    cost per element: two multiplications in the proof's composites and one to unblind
    (plus one in ``blind``); the proof's four are per batch.
    """
    if not len(blinds) == len(evaluated) == len(blinded):
        raise InvalidInputError("blinds, evaluated and blinded differ in length")
    verify_proof(pk, blinded, evaluated, proof, blinded_trusted=True)
    return unblind_batch(blinds, [bytes(e) for e in evaluated])
