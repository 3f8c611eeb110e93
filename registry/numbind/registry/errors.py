"""The one tree of domain errors. Domain code raises these; `registry.api.errors` maps each
class to a gRPC status with a static table, and nothing else reaches the wire.

    NumbindError
    ├── InvalidArgument        bad field or item; names the field / index
    ├── OutOfRange             a valid position past the end (a feed cursor beyond its head)
    ├── NotFound               unknown id (key, revocation, ...)
    ├── AlreadyExists          request id reused with a different body
    ├── FailedPrecondition     valid input that the current state refuses
    │   └── NotStoreKey        reconciliation asked under a key the store does not hold
    ├── PermissionDenied       authenticated but not allowed (role, token authority)
    ├── Unauthenticated        unknown or suspended principal
    ├── ResourceExhausted      quota; carries retry_after seconds
    ├── AttestationError       a holder attestation that must be refused
    │   └── MalformedAttestation, BadSignature, AttestationExpired,
    │       AttestationNotYetValid, AttestationLifetimeTooLong, AttestationReplayed,
    │       WrongPurpose, WrongCarrier
    └── Unavailable            transient storage trouble; safe to retry
        └── RekeyInProgress    the store is being re-keyed; carries retry_after, progress
"""

from __future__ import annotations


class NumbindError(Exception):
    """Root of every error the registry raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(NumbindError):
    pass


class OutOfRange(NumbindError):
    pass


class NotFound(NumbindError):
    pass


class AlreadyExists(NumbindError):
    pass


class FailedPrecondition(NumbindError):
    pass


class NotStoreKey(FailedPrecondition):
    """Digests and lists answer only under the store key, named here for the client."""

    def __init__(self, message: str, store_key_id: str) -> None:
        super().__init__(message)
        self.store_key_id = store_key_id


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


class RekeyInProgress(Unavailable):
    """Stored tokens are being re-keyed; ask again after `retry_after` seconds."""

    def __init__(
        self, message: str, retry_after: float, rows_done: int, rows_total: int | None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rows_done = rows_done
        self.rows_total = rows_total


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
