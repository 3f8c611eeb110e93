"""Holder attestations: signing (carrier SDK side) and verification (registry side)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import attestation as pa
from numbind.protocol.attestation import SIGNING_CONTEXT, Attestation, Purpose
from numbind.registry import errors
from numbind.registry.domain.attestation import verify
from numbind.v1 import holders_pb2

US = 1_000_000
NOW = 1_750_000_000 * US
CARRIER = "carrier-a"
CARRIER_KEY = nacl.signing.SigningKey(bytes(range(32)))
CARRIER_PUB = CARRIER_KEY.verify_key.encode()
OTHER_KEY = nacl.signing.SigningKey(bytes(32))
TOKEN = bytes(range(32))
KEY_ID = "0123456789abcdef"
NONCE = b"n" * 32
BASE = Attestation(
    carrier_id=CARRIER,
    token=TOKEN,
    key_id=KEY_ID,
    subject="subscriber-7f3a",
    tenure_start_us=NOW - 30 * 86_400 * US,
    purpose=Purpose.QUERY,
    nonce=NONCE,
    issued_at_us=NOW,
    expires_at_us=NOW + 300 * US,
)
ROOT = Path(__file__).resolve().parents[2]


def _registry_verify(
    data: bytes,
    signature: bytes,
    *,
    key: bytes | None = CARRIER_PUB,
    carrier: str = CARRIER,
    purpose: int = Purpose.QUERY,
    now: int = NOW,
) -> Attestation:
    return verify(
        data, signature, caller_carrier_id=carrier, carrier_key=key, purpose=purpose, now_us=now
    )


def _sign_raw(data: bytes, key: nacl.signing.SigningKey = CARRIER_KEY) -> bytes:
    """Sign arbitrary bytes the way a carrier would, so malformed bodies get past the signature."""
    return key.sign(SIGNING_CONTEXT + data).signature


def _message(att: Attestation = BASE) -> holders_pb2.HolderAttestation:
    """BASE's wire form, to be bent into shapes `Attestation` itself refuses to build."""
    msg = holders_pb2.HolderAttestation()
    msg.ParseFromString(pa.sign(att, CARRIER_KEY)[0])
    return msg


def _raises_exactly(cls: type[Exception], fn: Callable[[], object]) -> Exception:
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls, f"{type(info.value).__name__} is not {cls.__name__}"
    return info.value


# --- round trip -----------------------------------------------------------------------------


def test_issue_then_verify_round_trips() -> None:
    data, sig = pa.issue(
        CARRIER_KEY,
        carrier_id=CARRIER,
        token=TOKEN,
        key_id=KEY_ID,
        subject=BASE.subject,
        tenure_start_us=BASE.tenure_start_us,
        purpose=Purpose.QUERY,
        now_us=NOW,
        nonce=NONCE,
    )
    assert _registry_verify(data, sig) == BASE
    pa.verify_signature(data, sig, CARRIER_PUB)
    assert pa.parse(data) == BASE


def test_sign_serialises_once_deterministically_under_the_context() -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    assert data == _message().SerializeToString(deterministic=True)
    assert len(sig) == 64
    CARRIER_KEY.verify_key.verify(SIGNING_CONTEXT + data, sig)
    # Domain separation: the same signature is not valid over the bare bytes.
    with pytest.raises(nacl.exceptions.BadSignatureError):
        CARRIER_KEY.verify_key.verify(data, sig)


def _issue(token: bytes = TOKEN, lifetime_seconds: int = 300) -> tuple[bytes, bytes]:
    return pa.issue(
        CARRIER_KEY,
        carrier_id=CARRIER,
        token=token,
        key_id=KEY_ID,
        subject="s",
        tenure_start_us=0,
        purpose=Purpose.REVOKE,
        lifetime_seconds=lifetime_seconds,
        now_us=NOW,
    )


def test_issue_draws_a_fresh_32_byte_nonce() -> None:
    a, b = (pa.parse(_issue()[0]) for _ in range(2))
    assert len(a.nonce) == 32 and a.nonce != b.nonce
    assert a.expires_at_us - a.issued_at_us == 300 * US


def test_issue_refuses_what_the_registry_would_refuse() -> None:
    _raises_exactly(pa.LifetimeTooLong, lambda: _issue(lifetime_seconds=601))
    err = _raises_exactly(pa.Malformed, lambda: _issue(token=TOKEN[:31]))
    assert isinstance(err, pa.Malformed) and err.field == "attestation.token"


def test_verification_is_over_received_bytes_never_a_reserialisation() -> None:
    # Field 9 (expires_at) first, then fields 1..8: valid protobuf, not canonical order.
    canonical_msg = _message()
    tail = holders_pb2.HolderAttestation(expires_at=canonical_msg.expires_at).SerializeToString()
    head_msg = _message()
    head_msg.ClearField("expires_at")
    data = tail + head_msg.SerializeToString()
    canonical = canonical_msg.SerializeToString(deterministic=True)
    assert data != canonical and sorted(data) == sorted(canonical)
    sig = _sign_raw(data)

    assert _registry_verify(data, sig) == BASE
    # A verifier that re-serialised would refuse this validly signed attestation.
    with pytest.raises(nacl.exceptions.BadSignatureError):
        CARRIER_KEY.verify_key.verify(SIGNING_CONTEXT + canonical, sig)


# --- signature and carrier ------------------------------------------------------------------


def test_tampered_byte_is_a_bad_signature() -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    i = data.index(b"subscriber")
    tampered = data[:i] + b"S" + data[i + 1 :]
    err = _raises_exactly(errors.BadSignature, lambda: _registry_verify(tampered, sig))
    assert (
        str(err) == f"attestation signature does not verify under carrier {CARRIER}'s current key"
    )


def test_signature_by_another_key_is_a_bad_signature() -> None:
    data, sig = pa.sign(BASE, OTHER_KEY)
    _raises_exactly(errors.BadSignature, lambda: _registry_verify(data, sig))


def test_signature_without_the_context_is_a_bad_signature() -> None:
    data, _ = pa.sign(BASE, CARRIER_KEY)
    sig = CARRIER_KEY.sign(data).signature
    _raises_exactly(errors.BadSignature, lambda: _registry_verify(data, sig))


def test_signature_is_checked_before_anything_is_parsed() -> None:
    # Garbage that would be Malformed, unsigned: refused for its signature, never parsed.
    _raises_exactly(errors.BadSignature, lambda: _registry_verify(b"\xff" * 40, bytes(64)))


def test_carrier_without_a_registered_key_is_refused() -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    err = _raises_exactly(errors.WrongCarrier, lambda: _registry_verify(data, sig, key=None))
    assert "carrier has no registered attestation key" in str(err)


def test_attestation_for_another_carrier_is_refused() -> None:
    # Signed with the caller's own key, but naming another carrier.
    data, sig = pa.sign(dataclasses.replace(BASE, carrier_id="carrier-b"), CARRIER_KEY)
    err = _raises_exactly(errors.WrongCarrier, lambda: _registry_verify(data, sig))
    assert "carrier-b" in str(err) and CARRIER in str(err)


# --- times and purpose ----------------------------------------------------------------------

_SKEW = pa.CLOCK_SKEW_SECONDS * US


@pytest.mark.parametrize(
    ("issued", "lifetime_s", "now", "refusal"),
    [
        pytest.param(NOW, 300, NOW, None, id="fresh"),
        pytest.param(NOW, 300, NOW + 300 * US + _SKEW, errors.AttestationExpired, id="expired"),
        pytest.param(NOW, 300, NOW + 300 * US + _SKEW - 1, None, id="within-skew-after-expiry"),
        pytest.param(NOW + _SKEW + 1, 300, NOW, errors.AttestationNotYetValid, id="future"),
        pytest.param(NOW + _SKEW, 300, NOW, None, id="within-skew-before-issue"),
        pytest.param(NOW, 601, NOW, errors.AttestationLifetimeTooLong, id="lifetime-601s"),
        pytest.param(NOW, 600, NOW, None, id="lifetime-600s"),
        pytest.param(NOW, 0, NOW, errors.AttestationLifetimeTooLong, id="lifetime-0"),
        pytest.param(NOW, -5, NOW, errors.AttestationLifetimeTooLong, id="lifetime-negative"),
    ],
)
def test_times(
    issued: int, lifetime_s: int, now: int, refusal: type[errors.AttestationError] | None
) -> None:
    att = dataclasses.replace(BASE, issued_at_us=issued, expires_at_us=issued + lifetime_s * US)
    data, sig = pa.sign(att, CARRIER_KEY)
    if refusal is None:
        assert _registry_verify(data, sig, now=now) == att
    else:
        _raises_exactly(refusal, lambda: _registry_verify(data, sig, now=now))


def test_registry_settings_can_tighten_the_lifetime_and_skew() -> None:
    data, sig = pa.sign(dataclasses.replace(BASE, expires_at_us=NOW + 301 * US), CARRIER_KEY)

    def check(**kw: float) -> Attestation:
        return verify(
            data, sig, caller_carrier_id=CARRIER, carrier_key=CARRIER_PUB,
            purpose=Purpose.QUERY, now_us=NOW + 310 * US, **kw,
        )  # fmt: skip

    check()
    _raises_exactly(errors.AttestationLifetimeTooLong, lambda: check(max_lifetime_seconds=300))
    _raises_exactly(errors.AttestationExpired, lambda: check(skew_seconds=5))


def test_wrong_purpose_names_both_purposes() -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    err = _raises_exactly(
        errors.WrongPurpose, lambda: _registry_verify(data, sig, purpose=Purpose.REVOKE)
    )
    assert "got QUERY" in str(err) and "want REVOKE" in str(err)


# --- malformed ------------------------------------------------------------------------------


def _bent(change: Callable[[holders_pb2.HolderAttestation], None]) -> bytes:
    msg = _message()
    change(msg)
    return msg.SerializeToString()


def _set(name: str, value: object) -> Callable[[holders_pb2.HolderAttestation], None]:
    return lambda msg: setattr(msg, name, value)


def _clear(name: str) -> Callable[[holders_pb2.HolderAttestation], None]:
    return lambda msg: msg.ClearField(name)  # type: ignore[arg-type]


def _canonical() -> bytes:
    return pa.sign(BASE, CARRIER_KEY)[0]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(b"\xff\xff\xff\xff", "attestation", id="not-protobuf"),
        pytest.param(_bent(_set("token", TOKEN[:31])), "attestation.token", id="token-63"),
        pytest.param(_bent(_set("token", TOKEN + b"x")), "attestation.token", id="token-33"),
        pytest.param(_bent(_set("carrier_id", "Carrier")), "attestation.carrier_id", id="carrier"),
        pytest.param(_bent(_set("key_id", KEY_ID.upper())), "attestation.key_id", id="key-id"),
        pytest.param(_bent(_set("subject", "")), "attestation.subject", id="subject-empty"),
        pytest.param(_bent(_set("subject", "s" * 129)), "attestation.subject", id="subject-129"),
        pytest.param(_bent(_set("purpose", 0)), "attestation.purpose", id="purpose-unset"),
        pytest.param(_bent(_set("purpose", 3)), "attestation.purpose", id="purpose-unknown"),
        pytest.param(_bent(_set("nonce", b"n" * 15)), "attestation.nonce", id="nonce-15"),
        pytest.param(_bent(_set("nonce", b"n" * 65)), "attestation.nonce", id="nonce-65"),
        pytest.param(_bent(_clear("tenure_start")), "attestation.tenure_start", id="no-tenure"),
        pytest.param(_bent(_clear("issued_at")), "attestation.issued_at", id="no-issued-at"),
        pytest.param(_bent(_clear("expires_at")), "attestation.expires_at", id="no-expires-at"),
        # Field 10, varint 1: a field this parser does not know, appended and signed.
        pytest.param(_canonical() + b"\x50\x01", "attestation", id="unknown-field"),
        # Field 8 again with field 10 inside: merges into issued_at as an unknown field.
        pytest.param(_canonical() + b"\x42\x02\x50\x01", "attestation.issued_at", id="nested"),
        # Field 1 (a string) sent as a varint lands among the unknown fields.
        pytest.param(_canonical() + b"\x08\x01", "attestation", id="wrong-wire-type"),
        pytest.param(_canonical() + b"\x22\x01\xff", "attestation", id="subject-bad-utf8"),
        pytest.param(
            _canonical()
            + holders_pb2.HolderAttestation(
                issued_at=timestamp_pb2.Timestamp(seconds=1, nanos=1_000_000_000)
            ).SerializeToString(),
            "attestation.issued_at.nanos",
            id="nanos-out-of-range",
        ),
    ],
)
def test_malformed_but_correctly_signed_is_refused(data: bytes, field: str) -> None:
    err = _raises_exactly(
        errors.MalformedAttestation, lambda: _registry_verify(data, _sign_raw(data))
    )
    assert str(err).startswith(f"{field}: got ")
    # The shared module refuses the same bytes with its own class and the field path.
    client_err = _raises_exactly(pa.Malformed, lambda: pa.parse(data))
    assert isinstance(client_err, pa.Malformed) and client_err.field == field


def test_oversize_attestation_is_refused_even_when_signed() -> None:
    # A valid attestation padded with an unknown bytes field to 1 KiB + 1.
    base = _canonical()
    pad = pa.MAX_ATTESTATION_BYTES + 1 - len(base) - 3
    data = base + b"\x52" + bytes([pad & 0x7F | 0x80, pad >> 7]) + b"\x00" * pad
    assert len(data) == pa.MAX_ATTESTATION_BYTES + 1
    err = _raises_exactly(
        errors.MalformedAttestation, lambda: _registry_verify(data, _sign_raw(data))
    )
    assert str(err) == "attestation: got 1025 bytes, want at most 1024"


@pytest.mark.parametrize("size", [0, 63, 65])
def test_signature_of_the_wrong_size_is_malformed(size: int) -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    err = _raises_exactly(
        errors.MalformedAttestation, lambda: _registry_verify(data, (sig * 2)[:size])
    )
    assert str(err) == f"signature: got {size} bytes, want 64"


def test_shared_module_raises_its_own_classes() -> None:
    data, sig = pa.sign(BASE, CARRIER_KEY)
    _raises_exactly(
        pa.BadSignature, lambda: pa.verify_signature(data, sig, OTHER_KEY.verify_key.encode())
    )
    with pytest.raises(ValueError, match="verify_key"):
        pa.verify_signature(data, sig, CARRIER_PUB[:31])
    _raises_exactly(pa.Expired, lambda: pa.check_times(BASE, NOW + 360 * US))
    _raises_exactly(pa.NotYetValid, lambda: pa.check_times(BASE, NOW - 61 * US))
    _raises_exactly(pa.WrongPurpose, lambda: pa.check_purpose(BASE, Purpose.REVOKE))
    assert all(
        issubclass(c, pa.AttestationInvalid)
        for c in (pa.Malformed, pa.BadSignature, pa.Expired, pa.NotYetValid,
                  pa.LifetimeTooLong, pa.WrongPurpose)
    )  # fmt: skip


# --- property -------------------------------------------------------------------------------

_SIGNED = pa.sign(BASE, CARRIER_KEY)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=(len(_SIGNED[0]) + len(_SIGNED[1])) * 8 - 1))
def test_any_single_bit_flip_is_refused(bit: int) -> None:
    joined = bytearray(_SIGNED[0] + _SIGNED[1])
    joined[bit // 8] ^= 1 << (bit % 8)
    data, sig = bytes(joined[: len(_SIGNED[0])]), bytes(joined[len(_SIGNED[0]) :])
    with pytest.raises(errors.BadSignature):
        _registry_verify(data, sig)


# --- layering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("numbind.protocol.attestation", ("numbind.registry", "grpc", "sqlalchemy")),
        ("numbind.registry.domain.attestation", ("grpc", "sqlalchemy")),
    ],
)
def test_imports_stay_in_their_layer(module: str, forbidden: tuple[str, ...]) -> None:
    code = (
        f"import sys, {module}\n"
        f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {forbidden!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
