"""The SDK's own exceptions, from a fixed status-code table; callers never see raw grpc errors.

NumbindClientError            .code (StatusCode), .message, .retry_after (seconds or None)
├── InvalidRequest            INVALID_ARGUMENT, OUT_OF_RANGE
├── NotFound                  NOT_FOUND
├── Conflict                  ALREADY_EXISTS (request id reused, nonce replayed)
├── Refused                   FAILED_PRECONDITION
│   └── KeyRotated            asked under a key the registry no longer holds bindings
│                             under; .store_key_id names the one to use
├── PermissionDenied          PERMISSION_DENIED
├── Unauthenticated           UNAUTHENTICATED
├── QuotaExceeded             RESOURCE_EXHAUSTED (retryable, honours retry_after)
├── Unavailable               UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED (retryable)
├── RekeyInProgress           UNAVAILABLE while the registry re-keys its store after a
│                             rotation (.retry_after, .rows_done, .rows_total); not retried
│                             blindly: PlatformClient.sync waits it out with progress
├── Unimplemented             UNIMPLEMENTED
├── ServerError               INTERNAL, UNKNOWN, DATA_LOSS, CANCELLED
└── ProofError                the registry's evaluation proof did not verify (local)
"""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
from numbind.protocol.limits import REKEY_PROGRESS_KEY, RETRY_AFTER_KEY, STORE_KEY_ID_KEY


class NumbindClientError(Exception):
    code: grpc.StatusCode | None = None

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return isinstance(self, QuotaExceeded | Unavailable)


class InvalidRequest(NumbindClientError):
    pass


class NotFound(NumbindClientError):
    pass


class Conflict(NumbindClientError):
    pass


class Refused(NumbindClientError):
    pass


class KeyRotated(Refused):
    """Digests and lists answer only under the registry's store key (its active key)."""

    def __init__(self, message: str, store_key_id: str, code: grpc.StatusCode | None = None):
        super().__init__(message, code)
        self.store_key_id = store_key_id


class PermissionDenied(NumbindClientError):
    pass


class Unauthenticated(NumbindClientError):
    pass


class QuotaExceeded(NumbindClientError):
    pass


class Unavailable(NumbindClientError):
    pass


class RekeyInProgress(NumbindClientError):
    """The registry is re-keying its store after a key rotation: digests and lists answer
    again when it is done. Wait ``retry_after`` seconds; ``rows_done`` of ``rows_total``
    (None until counted) tell how far it is."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(
        self,
        message: str,
        rows_done: int,
        rows_total: int | None,
        code: grpc.StatusCode | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code, retry_after)
        self.rows_done = rows_done
        self.rows_total = rows_total


class Unimplemented(NumbindClientError):
    pass


class ServerError(NumbindClientError):
    pass


class ProofError(NumbindClientError):
    """The token service's proof failed: the registry is misbehaving or the key changed."""


_TABLE: dict[grpc.StatusCode, type[NumbindClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: Refused,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: QuotaExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.ABORTED: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_rpc_error(exc: grpc.RpcError) -> NumbindClientError:
    """Translate a grpc error (sync or aio) into the SDK's exception."""
    call: Any = exc  # grpc.Call and aio errors share these methods; the stubs disagree
    code: grpc.StatusCode = call.code()
    details: str = call.details() or code.name
    retry_after = None
    metadata = {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}
    if RETRY_AFTER_KEY in metadata:
        with contextlib.suppress(ValueError):
            retry_after = int(metadata[RETRY_AFTER_KEY]) / 1000.0
    if code == grpc.StatusCode.UNAVAILABLE and REKEY_PROGRESS_KEY in metadata:
        done, _, total = metadata[REKEY_PROGRESS_KEY].partition("/")
        with contextlib.suppress(ValueError):
            return RekeyInProgress(
                details,
                int(done),
                int(total) if total.isdigit() else None,
                code=code,
                retry_after=retry_after,
            )
    if code == grpc.StatusCode.FAILED_PRECONDITION and STORE_KEY_ID_KEY in metadata:
        return KeyRotated(details, metadata[STORE_KEY_ID_KEY], code=code)
    cls = _TABLE.get(code, ServerError)
    return cls(details, code=code, retry_after=retry_after)
