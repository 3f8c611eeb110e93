"""RFC 9497 OPRF (mode 0x00) and VOPRF (mode 0x01), ciphersuite ristretto255-SHA512.

Group arithmetic is libsodium's ristretto255 via ``rbcl`` (``numbind.protocol.ristretto``);
the suite's hashing is ``numbind.protocol.oprf_hashing`` and its batched DLEQ proof
``numbind.protocol.dleq``. This module is the protocol (key pairs, Blind, BlindEvaluate,
Finalize, the VOPRF batch calls) and the one place callers import the suite from: it
re-exports the names of the other two that make up RFC 9497's interface. Elements and
scalars are passed around as their canonical 32-byte encodings; scalars are little-endian.

numbind's token is the *unblinded element* ``N = k*HashToGroup(x)``, the value the RFC's
Finalize hashes last (``finalize_hash``): a group element can be re-keyed with one
multiplication (``numbind.protocol.rekey``), a hash cannot. Everything the RFC defines stays
in these three modules, Finalize included, and reproduces the official vectors byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from numbind.protocol.dleq import (
    PROOF_BYTES,
    check_batch,
    generate_proof,
    generate_proof_unchecked,
    verify_proof,
)
from numbind.protocol.oprf_hashing import (
    MODE_OPRF,
    MODE_VOPRF,
    SUITE_ID,
    context_string,
    expand_message_xmd,
    hash_to_group,
    hash_to_scalar,
    i2osp,
    prefixed,
)
from numbind.protocol.ristretto import (
    ELEMENT_BYTES,
    GENERATOR,
    SCALAR_BYTES,
    ZERO_SCALAR,
    DeriveKeyPairError,
    DeserializeError,
    InvalidInputError,
    VerifyError,
    VoprfError,
    deserialize_element,
    deserialize_scalar,
    invert_scalars,
    mul,
    mul_base,
    nonzero_scalar,
    scalar_invert,
    scalar_random,
)

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

OUTPUT_BYTES = 64


def public_key(sk: bytes) -> bytes:
    """Return ``sk * G``."""
    return mul_base(nonzero_scalar(sk, "secret key"))


def generate_key_pair() -> tuple[bytes, bytes]:
    """Return a random ``(skS, pkS)``."""
    sk = scalar_random()  # libsodium never returns zero here
    return sk, mul_base(sk)


def derive_key_pair(seed: bytes, info: bytes, mode: int) -> tuple[bytes, bytes]:
    """RFC 9497 §3.2.1 DeriveKeyPair; ``seed`` must be 32 bytes."""
    if len(seed) != 32:
        raise InvalidInputError(f"seed must be 32 bytes, got {len(seed)}")
    dst = b"DeriveKeyPair" + context_string(mode)
    derive_input = seed + prefixed(info)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + i2osp(counter, 1), mode, dst)
        if not hmac.compare_digest(sk, ZERO_SCALAR):
            return sk, mul_base(sk)
    raise DeriveKeyPairError("DeriveKeyPair: no non-zero scalar in 256 attempts")


def blind(input: bytes, mode: int, blind: bytes | None = None) -> tuple[bytes, bytes]:
    """Client Blind: return ``(blind, blind * HashToGroup(input))``.

    ``blind`` fixes the blinding scalar (test vectors only); otherwise it is random.
    """
    # Finalize length-prefixes the input with 2 bytes; fail before the round trip.
    i2osp(len(input), 2)
    r = scalar_random() if blind is None else nonzero_scalar(blind, "blind")
    return r, mul(r, hash_to_group(input, mode))


def blind_evaluate(sk: bytes, blinded_elements: Sequence[bytes]) -> list[bytes]:
    """Server BlindEvaluate over a batch: ``sk * B`` for each (validated) element."""
    k = nonzero_scalar(sk, "secret key")
    # Validated non-identity input and non-zero k in a prime-order group: the
    # product is never the identity, so libsodium's refusal cannot trigger.
    return [mul(k, deserialize_element(b)) for b in blinded_elements]


def finalize_hash(input: bytes, unblinded_element: bytes) -> bytes:
    """The last step of Finalize: ``Hash(len||input || len||N || "Finalize")``."""
    return hashlib.sha512(prefixed(input) + prefixed(unblinded_element) + b"Finalize").digest()


def unblind(blind: bytes, evaluated_element: bytes) -> bytes:
    """``blind^-1 * evaluated``: the unblinded element ``k*HashToGroup(input)``."""
    r = nonzero_scalar(blind, "blind")
    return mul(scalar_invert(r), deserialize_element(evaluated_element))


def finalize(input: bytes, blind: bytes, evaluated_element: bytes) -> bytes:
    """Client Finalize (OPRF/VOPRF): unblind, then hash with the input."""
    return finalize_hash(input, unblind(blind, evaluated_element))


def evaluate_element(sk: bytes, input: bytes, mode: int) -> bytes:
    """``sk*HashToGroup(input)``: what a client's unblind yields, computed with the key."""
    k = nonzero_scalar(sk, "secret key")
    return mul(k, hash_to_group(input, mode))


def evaluate(sk: bytes, input: bytes, mode: int) -> bytes:
    """Server-side unblinded Evaluate(skS, input)."""
    return finalize_hash(input, evaluate_element(sk, input, mode))


def unblind_batch(blinds: Sequence[bytes], evaluated: Sequence[bytes]) -> list[bytes]:
    """``unblind`` for a batch, sharing one inversion. ``evaluated`` must be validated."""
    if len(blinds) != len(evaluated):
        raise InvalidInputError(f"{len(blinds)} blinds for {len(evaluated)} elements")
    for b in blinds:
        nonzero_scalar(b, "blind")
    return [mul(r, e) for r, e in zip(invert_scalars(blinds), evaluated, strict=True)]


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
        k = nonzero_scalar(sk, "secret key")
        evaluated = [mul(k, bytes(b)) for b in blinded]
    else:
        evaluated = blind_evaluate(sk, blinded)
    check_batch(blinded, evaluated)
    rr = scalar_random() if r is None else nonzero_scalar(r, "proof random scalar")
    blinded_b = [bytes(x) for x in blinded]
    proof = generate_proof_unchecked(sk, GENERATOR, pk, blinded_b, evaluated, rr, MODE_VOPRF)
    return evaluated, proof


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
