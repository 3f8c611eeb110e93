"""RFC 9497 ristretto255-SHA512 OPRF/VOPRF: official vectors plus failure cases."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numbind.protocol import rekey as rk
from numbind.protocol import voprf as v

_VECTOR_FILE = "rfc9497_ristretto255_sha512.json"
_MODES = {"OPRF": v.MODE_OPRF, "VOPRF": v.MODE_VOPRF}
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")


def _vector_path() -> Path:
    path = Path(__file__).resolve().parents[3] / "shared" / "vectors" / _VECTOR_FILE
    env = os.environ.get("NUMBIND_VECTORS")
    if not path.is_file() and env:
        path = Path(env)
        if path.is_dir():
            path = path / _VECTOR_FILE
    return path


def _vector_cases() -> list[Any]:
    path = _vector_path()
    if not path.is_file():
        # A missing file must fail the run, not skip it (an empty parametrize skips).
        return [pytest.param(None, None, id="vector-file-missing")]
    data = json.loads(path.read_text())
    return [
        pytest.param(name, vec, id=f"{name}-{i}-batch{vec['Batch']}")
        for name in _MODES
        for i, vec in enumerate(data[name])
    ]


def _hexlist(field: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in field.split(",")]


def _key(seed_byte: int = 0xA3, mode: int = v.MODE_VOPRF) -> tuple[bytes, bytes]:
    return v.derive_key_pair(bytes([seed_byte]) * 32, b"test key", mode)


@pytest.mark.parametrize(("name", "vec"), _vector_cases())
def test_rfc9497_vector(name: str | None, vec: dict[str, Any] | None) -> None:
    if name is None or vec is None:
        pytest.fail(f"RFC 9497 vector file not found at {_vector_path()} (set NUMBIND_VECTORS)")
    mode = _MODES[name]
    sk, pk = v.derive_key_pair(bytes.fromhex(vec["Seed"]), bytes.fromhex(vec["KeyInfo"]), mode)
    assert sk.hex() == vec["skSm"]
    if "pkSm" in vec:
        assert pk.hex() == vec["pkSm"]
    assert v.public_key(sk) == pk

    inputs, blinds = _hexlist(vec["Input"]), _hexlist(vec["Blind"])
    assert len(inputs) == len(blinds) == vec["Batch"]
    pairs = [v.blind(x, mode, b) for x, b in zip(inputs, blinds, strict=True)]
    assert [r for r, _ in pairs] == blinds
    blinded = [e for _, e in pairs]
    assert blinded == _hexlist(vec["BlindedElement"])

    if mode == v.MODE_VOPRF:
        r = bytes.fromhex(vec["ProofRandomScalar"])
        evaluated, proof = v.voprf_blind_evaluate(sk, pk, blinded, r)
        assert proof.hex() == vec["Proof"]
        assert v.generate_proof(sk, _GENERATOR, pk, blinded, evaluated, r) == proof
        v.verify_proof(pk, blinded, evaluated, proof)
        outputs = v.voprf_finalize_batch(inputs, blinds, evaluated, blinded, proof, pk)
    else:
        evaluated = v.blind_evaluate(sk, blinded)
        outputs = [v.finalize(x, b, e) for x, b, e in zip(inputs, blinds, evaluated, strict=True)]
    assert evaluated == _hexlist(vec["EvaluationElement"])
    assert outputs == _hexlist(vec["Output"])
    assert [v.evaluate(sk, x, mode) for x in inputs] == outputs
    assert all(len(o) == v.OUTPUT_BYTES for o in outputs)

    # numbind's token is the unblinded element: Finalize(x, unblind(...)) is the vector's
    # Output, and the element is k*HashToGroup(x) whichever way it is computed.
    unblinded = [v.unblind(b, e) for b, e in zip(blinds, evaluated, strict=True)]
    assert [v.finalize_hash(x, n) for x, n in zip(inputs, unblinded, strict=True)] == outputs
    assert v.unblind_batch(blinds, evaluated) == unblinded
    assert [v.evaluate_element(sk, x, mode) for x in inputs] == unblinded
    if mode == v.MODE_VOPRF:
        assert v.voprf_unblind_batch(blinds, evaluated, blinded, proof, pk) == unblinded


def test_vector_file_covers_batches() -> None:
    data = json.loads(_vector_path().read_text())
    assert len(data["OPRF"]) >= 2
    assert any(vec["Batch"] > 1 for vec in data["VOPRF"])


def test_context_string_mode_is_raw_byte() -> None:
    assert v.context_string(v.MODE_OPRF) == b"OPRFV1-\x00-ristretto255-SHA512"
    assert v.context_string(v.MODE_VOPRF) == b"OPRFV1-\x01-ristretto255-SHA512"
    with pytest.raises(v.InvalidInputError):
        v.context_string(0x02)


def test_expand_message_xmd_lengths() -> None:
    out = v.expand_message_xmd(b"abc", b"DST", 200)
    assert len(out) == 200
    assert v.expand_message_xmd(b"abc", b"DST", 64) != out[:64]  # length is bound in
    with pytest.raises(v.InvalidInputError):
        v.expand_message_xmd(b"abc", b"D" * 256, 64)


def _batch(n: int = 2) -> tuple[bytes, bytes, list[bytes], list[bytes], bytes]:
    sk, pk = _key()
    blinded = [v.blind(bytes([i]), v.MODE_VOPRF)[1] for i in range(n)]
    evaluated, proof = v.voprf_blind_evaluate(sk, pk, blinded)
    return sk, pk, blinded, evaluated, proof


def test_verify_proof_accepts_honest_batch() -> None:
    _, pk, blinded, evaluated, proof = _batch(3)
    v.verify_proof(pk, blinded, evaluated, proof)
    assert len(proof) == v.PROOF_BYTES


def test_verify_proof_rejects_proof_from_other_key() -> None:
    _, pk, blinded, _, _ = _batch()
    sk2, pk2 = _key(0x11)
    evaluated2, proof2 = v.voprf_blind_evaluate(sk2, pk2, blinded)
    with pytest.raises(v.VerifyError):
        v.verify_proof(pk, blinded, evaluated2, proof2)


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_verify_proof_rejects_tampered_proof(index: int) -> None:
    _, pk, blinded, evaluated, proof = _batch()
    tampered = bytearray(proof)
    tampered[index] ^= 0x01 if index % 32 == 0 else 0x02  # stays a canonical scalar
    with pytest.raises(v.VerifyError):
        v.verify_proof(pk, blinded, evaluated, bytes(tampered))


def test_verify_proof_rejects_tampered_evaluated_element() -> None:
    _, pk, blinded, evaluated, proof = _batch()
    with pytest.raises(v.VerifyError):
        v.verify_proof(pk, blinded, [evaluated[0], _GENERATOR], proof)
    with pytest.raises(v.VerifyError):
        v.verify_proof(pk, blinded, evaluated[::-1], proof)
    with pytest.raises(v.VerifyError):
        v.voprf_finalize_batch([b"a", b"b"], [_GENERATOR] * 2, evaluated[::-1], blinded, proof, pk)


def test_verify_proof_rejects_malformed_inputs() -> None:
    _, pk, blinded, evaluated, proof = _batch()
    with pytest.raises(v.DeserializeError):
        v.verify_proof(pk, blinded, evaluated, proof[:63])
    with pytest.raises(v.DeserializeError):  # s = L is not canonical
        v.verify_proof(pk, blinded, evaluated, proof[:32] + _L.to_bytes(32, "little"))
    with pytest.raises(v.InvalidInputError):
        v.verify_proof(pk, blinded, evaluated[:1], proof)
    with pytest.raises(v.VerifyError):  # zero c and s must be rejected, not crash libsodium
        v.verify_proof(pk, blinded, evaluated, bytes(64))


@pytest.mark.parametrize(
    "encoding",
    [
        pytest.param(bytes(32), id="identity"),
        pytest.param(_P.to_bytes(32, "little"), id="p"),
        pytest.param((_P + 1).to_bytes(32, "little"), id="p-plus-1"),
        pytest.param((2**255 - 2).to_bytes(32, "little"), id="max-even-below-2^255"),
        pytest.param(_GENERATOR[:31] + bytes([_GENERATOR[31] | 0x80]), id="high-bit"),
        pytest.param(b"\x01" + bytes(31), id="negative-field-element"),
        pytest.param(_GENERATOR[:31], id="short"),
        pytest.param(_GENERATOR + b"\x00", id="long"),
        pytest.param(b"", id="empty"),
    ],
)
def test_deserialize_element_rejects(encoding: bytes) -> None:
    with pytest.raises(v.DeserializeError):
        v.deserialize_element(encoding)


def test_deserialize_element_accepts_generator() -> None:
    assert v.deserialize_element(_GENERATOR) == _GENERATOR


def test_deserialize_scalar_bounds() -> None:
    assert v.deserialize_scalar((_L - 1).to_bytes(32, "little")) == (_L - 1).to_bytes(32, "little")
    assert v.deserialize_scalar(bytes(32)) == bytes(32)
    for bad in (_L.to_bytes(32, "little"), b"\xff" * 32, bytes(31), bytes(33)):
        with pytest.raises(v.DeserializeError):
            v.deserialize_scalar(bad)


def test_identity_and_bad_inputs_rejected_before_libsodium() -> None:
    sk, _ = _key()
    with pytest.raises(v.DeserializeError):
        v.blind_evaluate(sk, [bytes(32)])
    with pytest.raises(v.DeserializeError):
        v.finalize(b"x", b"\x01" * 32, bytes(32))
    with pytest.raises(v.InvalidInputError):
        v.blind_evaluate(bytes(32), [_GENERATOR])
    with pytest.raises(v.InvalidInputError):
        v.blind(b"x" * 65536, v.MODE_OPRF)
    with pytest.raises(v.InvalidInputError):
        v.derive_key_pair(b"short", b"", v.MODE_OPRF)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=200),
    seed1=st.binary(min_size=32, max_size=32),
    seed2=st.binary(min_size=32, max_size=32),
    mode=st.sampled_from([v.MODE_OPRF, v.MODE_VOPRF]),
)
def test_protocol_matches_evaluate(data: bytes, seed1: bytes, seed2: bytes, mode: int) -> None:
    assume(seed1 != seed2)
    sk, pk = v.derive_key_pair(seed1, b"prop", mode)
    r, blinded = v.blind(data, mode)
    if mode == v.MODE_VOPRF:
        evaluated, proof = v.voprf_blind_evaluate(sk, pk, [blinded])
        (out,) = v.voprf_finalize_batch([data], [r], evaluated, [blinded], proof, pk)
    else:
        out = v.finalize(data, r, v.blind_evaluate(sk, [blinded])[0])
    assert out == v.evaluate(sk, data, mode)

    sk2, _ = v.derive_key_pair(seed2, b"prop", mode)
    assert v.evaluate(sk2, data, mode) != out
    other = v.finalize(data, r, v.blind_evaluate(sk2, [blinded])[0])
    assert other != out


def test_invert_scalars_matches_one_by_one() -> None:
    scalars = [v.deserialize_scalar(v.hash_to_scalar(bytes([i]), v.MODE_VOPRF)) for i in range(7)]
    inverses = v.invert_scalars(scalars)
    one = (1).to_bytes(32, "little")
    for s, inv in zip(scalars, inverses, strict=True):
        assert int.from_bytes(s, "little") * int.from_bytes(inv, "little") % _L == 1
        assert v.invert_scalars([s]) == [inv]
    assert v.invert_scalars([one]) == [one]
    assert v.invert_scalars([]) == []


def test_voprf_unblind_batch_refuses_a_proof_under_another_key() -> None:
    _, pk, blinded, _, _ = _batch()
    sk2, pk2 = _key(0x11)
    evaluated2, proof2 = v.voprf_blind_evaluate(sk2, pk2, blinded)
    with pytest.raises(v.VerifyError):
        v.voprf_unblind_batch([_GENERATOR] * 2, evaluated2, blinded, proof2, pk)
    with pytest.raises(v.InvalidInputError):
        v.voprf_unblind_batch([_GENERATOR], evaluated2, blinded, proof2, pk2)


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=64),
    seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=3, max_size=3, unique=True),
)
def test_rekey_maps_tokens_between_keys(data: bytes, seeds: list[bytes]) -> None:
    (a, _), (b, _), (c, _) = (v.derive_key_pair(s, b"rekey", v.MODE_VOPRF) for s in seeds)
    ta, tb, tc = (v.evaluate_element(k, data, v.MODE_VOPRF) for k in (a, b, c))
    ab, bc = rk.rekey_delta(a, b), rk.rekey_delta(b, c)
    assert rk.rekey(ab, ta) == tb
    assert rk.rekey_many(bc, [tb, tb]) == [tc, tc]
    assert rk.rekey(rk.compose_deltas(ab, bc), ta) == tc
    assert rk.rekey(rk.invert_delta(ab), tb) == ta
    # Delta is not either key, and does not map anything to itself.
    assert ab not in (a, b) and rk.rekey(ab, ta) != ta


def test_rekey_refuses_bad_inputs() -> None:
    sk, _ = _key()
    with pytest.raises(v.InvalidInputError):
        rk.rekey(bytes(32), _GENERATOR)
    with pytest.raises(v.DeserializeError):
        rk.rekey(sk, bytes(32))
    with pytest.raises(v.DeserializeError):
        rk.rekey_delta(sk, _L.to_bytes(32, "little"))
