"""Registry-side verification of a holder attestation, without storage or gRPC.

The checks that need storage stay with the caller, after `verify` returns: the nonce is
single-use, and the carrier is the token's current carrier.
"""

from __future__ import annotations

from dataclasses import dataclass

from numbind.protocol import attestation as proto_att
from numbind.protocol.attestation import Attestation
from numbind.registry import errors

__all__ = ["Attestation", "Policy", "verify"]

_US = 1_000_000
# Beyond this the skew, not the carrier, would decide how long an attestation lives.
MAX_CLOCK_SKEW_SECONDS = proto_att.MAX_LIFETIME_SECONDS


@dataclass(frozen=True)
class Policy:
    """How this registry judges attestation times (Settings.attestation_max_lifetime_seconds,
    Settings.clock_skew_seconds). Refuses, with ValueError, a lifetime the protocol does not
    allow or a skew outside [0, MAX_CLOCK_SKEW_SECONDS]."""

    max_lifetime_seconds: float = proto_att.MAX_LIFETIME_SECONDS
    clock_skew_seconds: float = proto_att.CLOCK_SKEW_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.max_lifetime_seconds <= proto_att.MAX_LIFETIME_SECONDS:
            raise ValueError(
                f"attestation_max_lifetime_seconds: got {self.max_lifetime_seconds:g}, want "
                f"more than 0 and at most {proto_att.MAX_LIFETIME_SECONDS} (the protocol's "
                "maximum)"
            )
        if not 0 <= self.clock_skew_seconds <= MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(
                f"clock_skew_seconds: got {self.clock_skew_seconds:g}, want 0.."
                f"{MAX_CLOCK_SKEW_SECONDS}"
            )

    def nonce_kept_until_us(self, att: Attestation) -> int:
        """The last instant at which `att` could still pass the time checks: its nonce
        must be remembered until then, and need not be after."""
        return att.expires_at_us + int(self.clock_skew_seconds * _US)


# Protocol refusals -> registry refusals, same message (BadSignature gets a registry one).
_ERRORS: dict[type[proto_att.AttestationInvalid], type[errors.AttestationError]] = {
    proto_att.Malformed: errors.MalformedAttestation,
    proto_att.BadSignature: errors.BadSignature,
    proto_att.WrongPurpose: errors.WrongPurpose,
    proto_att.Expired: errors.AttestationExpired,
    proto_att.NotYetValid: errors.AttestationNotYetValid,
    proto_att.LifetimeTooLong: errors.AttestationLifetimeTooLong,
}


def verify(
    signed_bytes: bytes,
    signature: bytes,
    *,
    caller_carrier_id: str,
    carrier_key: bytes | None,
    purpose: int,
    now_us: int,
    max_lifetime_seconds: float = proto_att.MAX_LIFETIME_SECONDS,
    skew_seconds: float = proto_att.CLOCK_SKEW_SECONDS,
) -> Attestation:
    """Verify `signature` over `signed_bytes` under the calling carrier's key, then parse
    and check them; return the attestation or raise an `errors.AttestationError`.

    `carrier_key` is the caller's registered Ed25519 key (None if it has none). Messages
    name fields as paths inside SignedAttestation; the caller may prefix the request path.
    """
    if carrier_key is None:
        raise errors.WrongCarrier(f"carrier has no registered attestation key: {caller_carrier_id}")
    try:
        proto_att.verify_signature(signed_bytes, signature, carrier_key)
    except proto_att.BadSignature:
        raise errors.BadSignature(
            f"attestation signature does not verify under carrier {caller_carrier_id}'s current key"
        ) from None
    except proto_att.AttestationInvalid as e:
        raise _translate(e) from e
    # Parsed only now: nothing about unverified bytes is ever interpreted.
    try:
        att = proto_att.parse(signed_bytes)
    except proto_att.AttestationInvalid as e:
        raise _translate(e) from e
    if att.carrier_id != caller_carrier_id:
        raise errors.WrongCarrier(
            f"attestation.carrier_id: got {att.carrier_id!r}, "
            f"want the calling carrier {caller_carrier_id!r}"
        )
    try:
        proto_att.check_times(
            att, now_us, max_lifetime_seconds=max_lifetime_seconds, skew_seconds=skew_seconds
        )
        proto_att.check_purpose(att, purpose)
    except proto_att.AttestationInvalid as e:
        raise _translate(e) from e
    return att


def _translate(e: proto_att.AttestationInvalid) -> errors.AttestationError:
    return _ERRORS[type(e)](e.message)
