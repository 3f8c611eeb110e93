"""Principals as the registry admits them: one check, whichever way a registration comes in
(the Admin RPCs, or `numbind admin add-*` and `numbind.registry.testing` on the data dir)."""

from __future__ import annotations

from dataclasses import dataclass

from numbind.protocol.attestation import PUBLIC_KEY_BYTES, public_key_problem
from numbind.registry.domain import validate
from numbind.registry.domain.types import Role
from numbind.registry.errors import field_error

ATTESTATION_KEY_BYTES = PUBLIC_KEY_BYTES
# Only these can be suspended and resumed; the admin is the operator itself.
SUSPENDABLE = (Role.PLATFORM, Role.CARRIER)


@dataclass(frozen=True)
class NewPrincipal:
    """A principal to register, checked in the constructor (InvalidArgument, naming the
    field). A carrier MUST bring its Ed25519 attestation key; nobody else has one."""

    role: str
    name: str
    display_name: str
    category: str = ""
    attestation_key: bytes | None = None

    def __post_init__(self) -> None:
        if self.role not in Role.ALL:
            raise field_error("role", repr(self.role), "platform, carrier or admin")
        validate.principal_id(f"{self.role}_id", self.name)
        validate.display_name(self.display_name)
        # A platform must say what it is; anyone else may (carriers are shown by name).
        if self.category or self.role == Role.PLATFORM:
            validate.category(self.category)
        key = self.attestation_key
        if self.role == Role.CARRIER:
            if key is None:
                raise field_error("attestation_public_key", "none", f"{ATTESTATION_KEY_BYTES}")
            attestation_key(key)
        if self.role != Role.CARRIER and key is not None:
            raise field_error("attestation_public_key", "a key", f"none for a {self.role}")


def suspendable_role(role: str) -> str:
    if role not in SUSPENDABLE:
        raise field_error("role", repr(role), "platform or carrier")
    return role


def attestation_key(value: bytes) -> bytes:
    """Every path that installs a carrier key passes here (registration, reissue,
    SetCarrierAttestationKey)."""
    want = public_key_problem(value)
    if want is None:
        return value
    if len(value) != ATTESTATION_KEY_BYTES:
        got = f"{len(value)} bytes"
    elif value == bytes(ATTESTATION_KEY_BYTES):
        got = "the all-zero key"
    else:
        got = "an invalid or small-order point"
    raise field_error("attestation_public_key", got, want)
