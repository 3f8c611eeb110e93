"""Principals as the registry admits them: one check, whichever way a registration comes in
(the Admin RPCs, or `numbind admin add-*` and `numbind.registry.testing` on the data dir)."""

from __future__ import annotations

from dataclasses import dataclass

from numbind.registry.domain import validate
from numbind.registry.domain.types import Role
from numbind.registry.errors import field_error

ATTESTATION_KEY_BYTES = 32
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
        validate.category(self.category)
        key = self.attestation_key
        if self.role == Role.CARRIER and (key is None or len(key) != ATTESTATION_KEY_BYTES):
            got = "none" if key is None else f"{len(key)} bytes"
            raise field_error("attestation_public_key", got, f"{ATTESTATION_KEY_BYTES}")
        if self.role != Role.CARRIER and key is not None:
            raise field_error("attestation_public_key", "a key", f"none for a {self.role}")


def suspendable_role(role: str) -> str:
    if role not in SUSPENDABLE:
        raise field_error("role", repr(role), "platform or carrier")
    return role


def attestation_key(value: bytes) -> bytes:
    if len(value) != ATTESTATION_KEY_BYTES:
        raise field_error(
            "attestation_public_key", f"{len(value)} bytes", f"{ATTESTATION_KEY_BYTES}"
        )
    return value
