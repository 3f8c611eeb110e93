"""The one tree of domain errors. Domain code raises these; `registry.api.errors` maps each
class to a gRPC status with a static table, and nothing else reaches the wire.

    NumbindError
    ├── InvalidArgument        bad field or item; names the field / index
    ├── NotFound               unknown id (key, revocation, ...)
    ├── AlreadyExists          request id reused with a different body
    ├── FailedPrecondition     valid input that the current state refuses
    ├── PermissionDenied       authenticated but not allowed (role, token authority)
    ├── Unauthenticated        unknown or suspended principal
    ├── ResourceExhausted      quota; carries retry_after seconds
    ├── AttestationError       a holder attestation that must be refused
    │   └── MalformedAttestation, BadSignature, AttestationExpired,
    │       AttestationNotYetValid, AttestationLifetimeTooLong, AttestationReplayed,
    │       WrongPurpose, WrongCarrier
    └── Unavailable            transient storage trouble; safe to retry
"""

from __future__ import annotations


class NumbindError(Exception):
    """Root of every error the registry raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(NumbindError):
    pass


class NotFound(NumbindError):
    pass


class AlreadyExists(NumbindError):
    pass


class FailedPrecondition(NumbindError):
    pass


class PermissionDenied(NumbindError):
    pass


class Unauthenticated(NumbindError):
    pass


class ResourceExhausted(NumbindError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(NumbindError):
    pass


class AttestationError(NumbindError):
    """A holder attestation the registry refuses; subclasses say why."""


class MalformedAttestation(AttestationError):
    pass


class BadSignature(AttestationError):
    pass


class AttestationExpired(AttestationError):
    pass


class AttestationNotYetValid(AttestationError):
    pass


class AttestationLifetimeTooLong(AttestationError):
    pass


class AttestationReplayed(AttestationError):
    pass


class WrongPurpose(AttestationError):
    pass


class WrongCarrier(AttestationError):
    pass


def field_error(field: str, got: object, want: str) -> InvalidArgument:
    """`field: got X, want Y` — the shape every validation message takes."""
    return InvalidArgument(f"{field}: got {got}, want {want}")
