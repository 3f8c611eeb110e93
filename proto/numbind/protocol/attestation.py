"""Holder attestations: a carrier's signed, short-lived statement that a subscriber holds a
token, for one call of one purpose. Shared by the carrier SDK (signs) and the registry
(verifies); imports nothing from either.

The carrier serialises a `HolderAttestation` once and signs those bytes; they travel as
`SignedAttestation.attestation`. A verifier checks the signature over the bytes it received,
then parses them, and never re-serialises.

    AttestationInvalid
    ├── Malformed          bad size, not a HolderAttestation, unknown field, bad field value
    ├── BadSignature       does not verify under the given key
    ├── Expired            past expires_at plus clock skew
    ├── NotYetValid        issued_at beyond now plus clock skew
    ├── LifetimeTooLong    expires_at - issued_at not in (0, 600 s]
    └── WrongPurpose       signed for another purpose than the call's
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from enum import IntEnum

import nacl.bindings
import nacl.exceptions
import nacl.signing
from google.protobuf import message as pb_message
from google.protobuf import timestamp_pb2
from google.protobuf.unknown_fields import UnknownFieldSet
from numbind.protocol.limits import TOKEN_BYTES
from numbind.v1 import holders_pb2

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "MAX_ATTESTATION_BYTES",
    "MAX_LIFETIME_SECONDS",
    "NONCE_MAX",
    "NONCE_MIN",
    "SIGNATURE_BYTES",
    "SIGNING_CONTEXT",
    "Attestation",
    "AttestationInvalid",
    "BadSignature",
    "Expired",
    "LifetimeTooLong",
    "Malformed",
    "NotYetValid",
    "Purpose",
    "WrongPurpose",
    "check_purpose",
    "check_times",
    "issue",
    "parse",
    "sign",
    "verify_signature",
]

# Domain separation: a signature made for an attestation can never be replayed as a
# signature over some other numbind message, and vice versa.
SIGNING_CONTEXT = b"numbind-attestation-v1\x00"
MAX_LIFETIME_SECONDS = 600
CLOCK_SKEW_SECONDS = 60
NONCE_MIN = 16
NONCE_MAX = 64
SUBJECT_MAX = 128
SIGNATURE_BYTES = 64
VERIFY_KEY_BYTES = 32
# The largest valid attestation is under 800 bytes (a 128-character subject of 4-byte
# UTF-8 characters included); refusing more bounds the work done before the signature check.
MAX_ATTESTATION_BYTES = 1024
DEFAULT_LIFETIME_SECONDS = 300
DEFAULT_NONCE_BYTES = 32

_US = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CARRIER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_TS_MIN_SECONDS = -62_135_596_800
_TS_MAX_SECONDS = 253_402_300_799
_TS_MIN_US = _TS_MIN_SECONDS * _US
_TS_MAX_US = _TS_MAX_SECONDS * _US + 999_999


class Purpose(IntEnum):
    """What the holder may do with the attestation; values are `AttestationPurpose`'s."""

    QUERY = 1
    REVOKE = 2


class AttestationInvalid(Exception):
    """Root of every reason to refuse an attestation."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Malformed(AttestationInvalid):
    """A size, encoding or field value is wrong; `field` is its path in SignedAttestation."""

    def __init__(self, field: str, got: object, want: str) -> None:
        super().__init__(f"{field}: got {got}, want {want}")
        self.field = field


class BadSignature(AttestationInvalid):
    pass


class Expired(AttestationInvalid):
    pass


class NotYetValid(AttestationInvalid):
    pass


class LifetimeTooLong(AttestationInvalid):
    pass


class WrongPurpose(AttestationInvalid):
    pass


@dataclass(frozen=True)
class Attestation:
    """The domain view of a HolderAttestation; its constructor refuses malformed values.

    Times are microseconds since the Unix epoch.
    """

    carrier_id: str
    token: bytes
    key_id: str
    subject: str
    tenure_start_us: int
    purpose: int
    nonce: bytes
    issued_at_us: int
    expires_at_us: int

    def __post_init__(self) -> None:
        if not _CARRIER_ID.fullmatch(self.carrier_id):
            raise Malformed(
                "attestation.carrier_id", repr(self.carrier_id[:70]), "[a-z0-9][a-z0-9._-]{0,62}"
            )
        if len(self.token) != TOKEN_BYTES:
            raise Malformed("attestation.token", f"{len(self.token)} bytes", f"{TOKEN_BYTES}")
        if not _KEY_ID.fullmatch(self.key_id):
            raise Malformed(
                "attestation.key_id", repr(self.key_id[:40]), "16 lowercase hex characters"
            )
        # Only the length is echoed: the subject is a subscriber pseudonym.
        if not 1 <= len(self.subject) <= SUBJECT_MAX:
            raise Malformed(
                "attestation.subject", f"{len(self.subject)} characters", f"1..{SUBJECT_MAX}"
            )
        if self.purpose not in (Purpose.QUERY, Purpose.REVOKE):
            raise Malformed("attestation.purpose", self.purpose, "1 (QUERY) or 2 (REVOKE)")
        if not NONCE_MIN <= len(self.nonce) <= NONCE_MAX:
            raise Malformed(
                "attestation.nonce", f"{len(self.nonce)} bytes", f"{NONCE_MIN}..{NONCE_MAX}"
            )
        for name in ("tenure_start", "issued_at", "expires_at"):
            us: int = getattr(self, f"{name}_us")
            if not _TS_MIN_US <= us <= _TS_MAX_US:
                raise Malformed(f"attestation.{name}", f"{us} us", "years 0001..9999")


PUBLIC_KEY_BYTES = 32


def public_key_problem(key: bytes) -> str | None:
    """What a carrier's attestation key must be, if `key` is not one; None when it is.

    A key that is not a canonical point of the prime-order subgroup (all zeros, the
    identity, a point of small order, a non-canonical encoding) lets signatures verify that
    the carrier never made, or none at all: refused wherever a key is installed."""
    if len(key) != PUBLIC_KEY_BYTES:
        return f"{PUBLIC_KEY_BYTES} bytes"
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(key):
        return (
            "a valid Ed25519 public key: a canonical encoding of a point of the prime-order "
            "subgroup, not the identity or a point of small order"
        )
    return None


def sign(attestation: Attestation, signing_key: nacl.signing.SigningKey) -> tuple[bytes, bytes]:
    """Serialise once and sign those bytes; returns (attestation_bytes, signature).

    Send both exactly as returned: the bytes, not the object, are what was signed.
    """
    msg = holders_pb2.HolderAttestation(
        carrier_id=attestation.carrier_id,
        token=attestation.token,
        key_id=attestation.key_id,
        subject=attestation.subject,
        tenure_start=_timestamp(attestation.tenure_start_us),
        purpose=holders_pb2.AttestationPurpose.ValueType(attestation.purpose),
        nonce=attestation.nonce,
        issued_at=_timestamp(attestation.issued_at_us),
        expires_at=_timestamp(attestation.expires_at_us),
    )
    data = msg.SerializeToString(deterministic=True)
    return data, signing_key.sign(SIGNING_CONTEXT + data).signature


def issue(
    signing_key: nacl.signing.SigningKey,
    *,
    carrier_id: str,
    token: bytes,
    key_id: str,
    subject: str,
    tenure_start_us: int,
    purpose: int,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    now_us: int | None = None,
    nonce: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Build, check and sign an attestation valid from now for `lifetime_seconds`.

    Refuses (with the verifier's own errors) anything a registry would refuse as malformed
    or too long-lived, so a carrier finds out at signing time.
    """
    issued = _now_us() if now_us is None else now_us
    att = Attestation(
        carrier_id=carrier_id,
        token=token,
        key_id=key_id,
        subject=subject,
        tenure_start_us=tenure_start_us,
        purpose=purpose,
        nonce=os.urandom(DEFAULT_NONCE_BYTES) if nonce is None else nonce,
        issued_at_us=issued,
        expires_at_us=issued + lifetime_seconds * _US,
    )
    check_times(att, issued)
    return sign(att, signing_key)


def verify_signature(attestation_bytes: bytes, signature: bytes, verify_key: bytes) -> None:
    """Check `signature` over exactly the received bytes; raise Malformed or BadSignature.

    `verify_key` is the carrier's 32-byte Ed25519 public key (ValueError otherwise: that
    is the verifier's configuration, not the attestation, at fault).
    """
    if len(verify_key) != VERIFY_KEY_BYTES:
        raise ValueError(f"verify_key: got {len(verify_key)} bytes, want {VERIFY_KEY_BYTES}")
    _check_size(attestation_bytes)
    if len(signature) != SIGNATURE_BYTES:
        raise Malformed("signature", f"{len(signature)} bytes", f"{SIGNATURE_BYTES}")
    try:
        nacl.signing.VerifyKey(verify_key).verify(SIGNING_CONTEXT + attestation_bytes, signature)
    except nacl.exceptions.BadSignatureError:
        raise BadSignature("attestation signature does not verify") from None


def parse(attestation_bytes: bytes) -> Attestation:
    """Parse bytes whose signature has been verified; strict, raises Malformed.

    Unknown fields anywhere are refused: a signer must not be able to say more than this
    parser reads. Non-canonical but valid encodings are accepted as they are.
    """
    _check_size(attestation_bytes)
    msg = holders_pb2.HolderAttestation()
    try:
        msg.ParseFromString(attestation_bytes)
    except pb_message.DecodeError:
        raise Malformed(
            "attestation", "bytes that do not decode", "a serialised HolderAttestation"
        ) from None
    _no_unknown_fields("attestation", msg)
    times: dict[str, int] = {}
    for name in ("tenure_start", "issued_at", "expires_at"):
        if not msg.HasField(name):
            raise Malformed(f"attestation.{name}", "unset", "a timestamp")
        ts: timestamp_pb2.Timestamp = getattr(msg, name)
        _no_unknown_fields(f"attestation.{name}", ts)
        times[name] = _microseconds(f"attestation.{name}", ts)
    return Attestation(
        carrier_id=msg.carrier_id,
        token=msg.token,
        key_id=msg.key_id,
        subject=msg.subject,
        tenure_start_us=times["tenure_start"],
        purpose=Purpose(msg.purpose) if msg.purpose in (1, 2) else int(msg.purpose),
        nonce=msg.nonce,
        issued_at_us=times["issued_at"],
        expires_at_us=times["expires_at"],
    )


def check_times(
    att: Attestation,
    now_us: int,
    *,
    max_lifetime_seconds: float = MAX_LIFETIME_SECONDS,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> None:
    """Refuse a lifetime outside (0, max], an issue time beyond now + skew, or an expiry
    time + skew that is not after now."""
    lifetime = att.expires_at_us - att.issued_at_us
    if not 0 < lifetime <= max_lifetime_seconds * _US:
        raise LifetimeTooLong(
            f"attestation lifetime (expires_at - issued_at): got {lifetime / _US:g} s, "
            f"want more than 0 and at most {max_lifetime_seconds:g} s"
        )
    skew = int(skew_seconds * _US)
    if att.issued_at_us > now_us + skew:
        raise NotYetValid(
            f"attestation issued_at {_iso(att.issued_at_us)} is after now "
            f"({_iso(now_us)}) by more than {skew_seconds:g} s of clock skew"
        )
    if att.expires_at_us + skew <= now_us:
        raise Expired(
            f"attestation expired at {_iso(att.expires_at_us)}; now is {_iso(now_us)} "
            f"({skew_seconds:g} s of clock skew allowed)"
        )


def check_purpose(att: Attestation, purpose: int) -> None:
    """Refuse an attestation signed for another purpose than `purpose`."""
    if att.purpose != purpose:
        raise WrongPurpose(
            f"attestation purpose: got {_purpose_name(att.purpose)}, want {_purpose_name(purpose)}"
        )


def _check_size(attestation_bytes: bytes) -> None:
    if len(attestation_bytes) > MAX_ATTESTATION_BYTES:
        raise Malformed(
            "attestation", f"{len(attestation_bytes)} bytes", f"at most {MAX_ATTESTATION_BYTES}"
        )


def _no_unknown_fields(field: str, msg: pb_message.Message) -> None:
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
        raise Malformed(field, f"unknown field numbers {numbers}", "only known fields")


def _microseconds(field: str, ts: timestamp_pb2.Timestamp) -> int:
    if not _TS_MIN_SECONDS <= ts.seconds <= _TS_MAX_SECONDS:
        raise Malformed(f"{field}.seconds", ts.seconds, "years 0001..9999")
    if not 0 <= ts.nanos <= 999_999_999:
        raise Malformed(f"{field}.nanos", ts.nanos, "0..999999999")
    # Other signers may send nanosecond precision; flooring keeps expiry conservative.
    return ts.seconds * _US + ts.nanos // 1000


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, _US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def _purpose_name(purpose: int) -> str:
    try:
        return Purpose(purpose).name
    except ValueError:
        return str(purpose)


def _iso(us: int) -> str:
    try:
        return (_EPOCH + dt.timedelta(microseconds=us)).isoformat()
    except OverflowError:
        return f"{us} us"


def _now_us() -> int:
    return time.time_ns() // 1000
