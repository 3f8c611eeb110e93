"""The SDK's own exceptions, from a fixed status-code table; callers never see raw grpc errors.

NumbindClientError            .code (StatusCode), .message, .retry_after (seconds or None)
├── InvalidRequest            INVALID_ARGUMENT, OUT_OF_RANGE
├── NotFound                  NOT_FOUND
├── Conflict                  ALREADY_EXISTS (request id reused, nonce replayed)
├── Refused                   FAILED_PRECONDITION
├── PermissionDenied          PERMISSION_DENIED
├── Unauthenticated           UNAUTHENTICATED
├── QuotaExceeded             RESOURCE_EXHAUSTED (retryable, honours retry_after)
├── Unavailable               UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED (retryable)
├── Unimplemented             UNIMPLEMENTED
├── ServerError               INTERNAL, UNKNOWN, DATA_LOSS, CANCELLED
└── ProofError                the registry's evaluation proof did not verify (local)
"""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
from numbind.protocol.limits import RETRY_AFTER_KEY


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


class PermissionDenied(NumbindClientError):
    pass


class Unauthenticated(NumbindClientError):
    pass


class QuotaExceeded(NumbindClientError):
    pass


class Unavailable(NumbindClientError):
    pass


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
    for key, value in call.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY:
            with contextlib.suppress(ValueError):
                retry_after = int(value) / 1000.0
    cls = _TABLE.get(code, ServerError)
    return cls(details, code=code, retry_after=retry_after)
