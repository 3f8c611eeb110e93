"""The SDK's own exceptions and error codes; a caller never sees a grpc type.

NumbindClientError      .code (ErrorCode), .message, .reason, .position, .item, .retry_after
├── InvalidRequest      INVALID_ARGUMENT, OUT_OF_RANGE (the registry's, or the SDK's own check)
├── NotFound            NOT_FOUND
├── Conflict            ALREADY_EXISTS (request id reused, nonce replayed)
├── Refused             FAILED_PRECONDITION
│   └── KeyRotated      KEY_ROTATED: asked under a key the registry no longer holds bindings
│                       under; .store_key_id names the one to use
├── PermissionDenied    PERMISSION_DENIED
├── Unauthenticated     UNAUTHENTICATED
├── QuotaExceeded       RESOURCE_EXHAUSTED (retryable, honours retry_after)
├── Unavailable         UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED (retryable)
│   └── CertificateMismatch  UNAVAILABLE from the TLS handshake: the registry's certificate
│                       does not name the host dialled, or is not from the bundle's CA;
│                       not retried (it is the set-up, not a moment)
├── RekeyInProgress     REKEY_IN_PROGRESS: UNAVAILABLE while the registry re-keys its store
│                       after a rotation (.retry_after, .rows_done, .rows_total); not retried
│                       blindly: PlatformClient.sync waits it out with progress
├── Unimplemented       UNIMPLEMENTED
├── ServerError         INTERNAL, UNKNOWN, DATA_LOSS; INVALID_RESPONSE (checked here)
├── ProofError          PROOF_FAILED: the token service's proof did not verify (checked here)
└── SyncAborted         SYNC_ABORTED: a sync planned more withdrawals than allowed

A bad number is ``numbind.sdk.phone.InvalidNumber`` (a ValueError), raised before anything
is sent.

Positions. When a batched call (publish, withdraw, report, check_reassigned, tokenize) fails
because of one item, ``position`` is that item's 1-based position in everything the caller
passed to the call, and ``item`` says what it counts: the message reads
``"binding 10,004: bound_at: ..."``. The registry names items by their index in one request
(``bindings[3].bound_at``); the SDK rewrites that to the caller's position.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable
from typing import Any, Self, TypedDict, Unpack

import grpc
from numbind.protocol.limits import REKEY_PROGRESS_KEY, RETRY_AFTER_KEY, STORE_KEY_ID_KEY

__all__ = [
    "CertificateMismatch",
    "Conflict",
    "ErrorCode",
    "InvalidRequest",
    "KeyRotated",
    "NotFound",
    "NumbindClientError",
    "PermissionDenied",
    "ProofError",
    "QuotaExceeded",
    "Refused",
    "RekeyInProgress",
    "ServerError",
    "SyncAborted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]


class ErrorCode(enum.StrEnum):
    """Why a call failed: the registry's status, or a check the SDK made itself."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    ABORTED = "ABORTED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"
    DATA_LOSS = "DATA_LOSS"
    CANCELLED = "CANCELLED"
    # Found by the SDK, not sent by the registry.
    INVALID_RESPONSE = "INVALID_RESPONSE"  # the registry's answer broke the contract
    PROOF_FAILED = "PROOF_FAILED"  # the token service's proof did not verify
    SYNC_ABORTED = "SYNC_ABORTED"  # a sync over its max_withdraw; nothing changed
    # What the registry said beside its status (trailing metadata), told apart here.
    KEY_ROTATED = "KEY_ROTATED"  # FAILED_PRECONDITION: not the key bindings are held under
    REKEY_IN_PROGRESS = "REKEY_IN_PROGRESS"  # UNAVAILABLE: the store is being re-keyed


class NumbindClientError(Exception):
    """Root of the SDK's errors. ``reason`` is ``message`` without the item's position."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(
        self,
        message: str,
        code: ErrorCode | None = None,
        retry_after: float | None = None,
        *,
        item: str | None = None,
        position: int | None = None,
    ) -> None:
        if position is not None and item is None:
            raise TypeError("position needs the item it counts")
        self.reason = message
        self.message = message if position is None else f"{item} {position:,}: {message}"
        super().__init__(self.message)
        self.code = code if code is not None else type(self).code
        self.retry_after = retry_after
        self.item = item
        self.position = position

    @property
    def retryable(self) -> bool:
        return isinstance(self, QuotaExceeded | Unavailable)

    def at(self, item: str, position: int, reason: str | None = None) -> Self:
        """The same error, with all it carries, about the caller's ``item`` number
        ``position`` (1-based)."""
        return self._remade(
            reason, code=self.code, retry_after=self.retry_after, item=item, position=position
        )

    def _remade(self, reason: str | None, **place: Unpack[Place]) -> Self:
        """This error again at ``place``, its reason replaced by ``reason`` if given. A
        subclass whose constructor is ``(message, ..., **place)`` only names what it carries
        (``_carried``); one with another constructor overrides this."""
        return type(self)(self.reason if reason is None else reason, **place, **self._carried())

    def _carried(self) -> dict[str, Any]:
        """What a subclass carries beyond these fields, as its constructor's keywords."""
        return {}

    def shifted(self, offset: int) -> NumbindClientError:
        """Positions counted from ``offset`` items further into the caller's input."""
        if self.position is None or self.item is None or offset == 0:
            return self
        return self.at(self.item, self.position + offset)


class Place(TypedDict, total=False):
    """The keywords every error takes beside its message (see NumbindClientError)."""

    code: ErrorCode | None
    retry_after: float | None
    item: str | None
    position: int | None


class InvalidRequest(NumbindClientError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(NumbindClientError):
    code = ErrorCode.NOT_FOUND


class Conflict(NumbindClientError):
    code = ErrorCode.ALREADY_EXISTS


class Refused(NumbindClientError):
    code = ErrorCode.FAILED_PRECONDITION


class KeyRotated(Refused):
    """Digests and lists answer only under the registry's store key (its active key), named
    by ``store_key_id``."""

    code = ErrorCode.KEY_ROTATED

    def __init__(self, message: str, store_key_id: str, **place: Unpack[Place]) -> None:
        super().__init__(message, **place)
        self.store_key_id = store_key_id

    def _carried(self) -> dict[str, Any]:
        return {"store_key_id": self.store_key_id}


class PermissionDenied(NumbindClientError):
    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(NumbindClientError):
    code = ErrorCode.UNAUTHENTICATED


class QuotaExceeded(NumbindClientError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(NumbindClientError):
    code = ErrorCode.UNAVAILABLE


class CertificateMismatch(Unavailable):
    """The TLS handshake failed on the certificate itself: it names other hosts than the
    one dialled (`numbind admin init --server-name HOST` re-issues it), or another CA
    signed it (a stale bundle, another registry). Retrying cannot help, so it is not
    retried: before, the SDK retried it for 8-10 s as any UNAVAILABLE."""

    @property
    def retryable(self) -> bool:
        return False


# gRPC's words (lower-cased) for a handshake that failed on the certificate, not on the
# network: it names another host (the chain verified), or another CA signed it.
HOSTNAME_MISMATCH = "hostname verification check failed"
_CERTIFICATE_FAILURES = (HOSTNAME_MISMATCH, "certificate_verify_failed")


class RekeyInProgress(NumbindClientError):
    """The registry is re-keying its store after a key rotation: digests and lists answer
    again when it is done. Wait ``retry_after`` seconds; ``rows_done`` of ``rows_total``
    (None until counted) tell how far it is."""

    code = ErrorCode.REKEY_IN_PROGRESS

    def __init__(
        self, message: str, rows_done: int, rows_total: int | None, **place: Unpack[Place]
    ) -> None:
        super().__init__(message, **place)
        self.rows_done = rows_done
        self.rows_total = rows_total

    def _carried(self) -> dict[str, Any]:
        return {"rows_done": self.rows_done, "rows_total": self.rows_total}


class Unimplemented(NumbindClientError):
    code = ErrorCode.UNIMPLEMENTED


class ServerError(NumbindClientError):
    code = ErrorCode.INTERNAL


class ProofError(NumbindClientError):
    """The token service's proof failed: the registry is misbehaving or the key changed."""

    code = ErrorCode.PROOF_FAILED


class SyncAborted(NumbindClientError):
    """A sync planned more withdrawals than its limit allows; nothing was changed.

    ``withdraw`` is what it would have withdrawn, ``server_bindings`` what the registry
    held, ``limit`` the most it could withdraw (``max_withdraw``, or by default the larger
    of 10 % of ``server_bindings`` and 1,000, but not more than the larger of half of them
    and 100)."""

    code = ErrorCode.SYNC_ABORTED

    def __init__(
        self,
        message: str,
        *,
        withdraw: int = 0,
        server_bindings: int = 0,
        limit: int = 0,
        **place: Unpack[Place],
    ) -> None:
        super().__init__(message, **place)
        self.withdraw = withdraw
        self.server_bindings = server_bindings
        self.limit = limit

    def _carried(self) -> dict[str, Any]:
        return {
            "withdraw": self.withdraw,
            "server_bindings": self.server_bindings,
            "limit": self.limit,
        }


_TABLE: dict[grpc.StatusCode, tuple[ErrorCode, type[NumbindClientError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (ErrorCode.INVALID_ARGUMENT, InvalidRequest),
    grpc.StatusCode.OUT_OF_RANGE: (ErrorCode.OUT_OF_RANGE, InvalidRequest),
    grpc.StatusCode.NOT_FOUND: (ErrorCode.NOT_FOUND, NotFound),
    grpc.StatusCode.ALREADY_EXISTS: (ErrorCode.ALREADY_EXISTS, Conflict),
    grpc.StatusCode.FAILED_PRECONDITION: (ErrorCode.FAILED_PRECONDITION, Refused),
    grpc.StatusCode.PERMISSION_DENIED: (ErrorCode.PERMISSION_DENIED, PermissionDenied),
    grpc.StatusCode.UNAUTHENTICATED: (ErrorCode.UNAUTHENTICATED, Unauthenticated),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (ErrorCode.RESOURCE_EXHAUSTED, QuotaExceeded),
    grpc.StatusCode.UNAVAILABLE: (ErrorCode.UNAVAILABLE, Unavailable),
    grpc.StatusCode.DEADLINE_EXCEEDED: (ErrorCode.DEADLINE_EXCEEDED, Unavailable),
    grpc.StatusCode.ABORTED: (ErrorCode.ABORTED, Unavailable),
    grpc.StatusCode.UNIMPLEMENTED: (ErrorCode.UNIMPLEMENTED, Unimplemented),
    grpc.StatusCode.INTERNAL: (ErrorCode.INTERNAL, ServerError),
    grpc.StatusCode.UNKNOWN: (ErrorCode.UNKNOWN, ServerError),
    grpc.StatusCode.DATA_LOSS: (ErrorCode.DATA_LOSS, ServerError),
    # Our own cancellation raises asyncio.CancelledError, never this: CANCELLED comes from
    # the other side (a registry stopping past its grace, a proxy dropping the call),
    # and every numbind call carries a request id, so trying again is safe.
    grpc.StatusCode.CANCELLED: (ErrorCode.CANCELLED, Unavailable),
}


def from_rpc_error(exc: grpc.RpcError) -> NumbindClientError:
    """Translate a grpc error (sync or aio) into the SDK's exception."""
    call: Any = exc  # grpc.Call and aio errors share these methods; the stubs disagree
    status: grpc.StatusCode = call.code()
    details: str = call.details() or status.name
    retry_after = None
    metadata = {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}
    if RETRY_AFTER_KEY in metadata:
        with contextlib.suppress(ValueError):
            retry_after = int(metadata[RETRY_AFTER_KEY]) / 1000.0
    if status == grpc.StatusCode.UNAVAILABLE and REKEY_PROGRESS_KEY in metadata:
        done, _, total = metadata[REKEY_PROGRESS_KEY].partition("/")
        with contextlib.suppress(ValueError):
            return RekeyInProgress(
                details,
                int(done),
                int(total) if total.isdigit() else None,
                retry_after=retry_after,
            )
    if status == grpc.StatusCode.FAILED_PRECONDITION and STORE_KEY_ID_KEY in metadata:
        return KeyRotated(details, metadata[STORE_KEY_ID_KEY], retry_after=retry_after)
    if status == grpc.StatusCode.UNAVAILABLE and any(
        words in details.lower() for words in _CERTIFICATE_FAILURES
    ):
        return CertificateMismatch(details)
    code, cls = _TABLE.get(status, (ErrorCode.UNKNOWN, ServerError))
    return cls(details, code=code, retry_after=retry_after)


def located(
    exc: NumbindClientError, field: str, item: str, position: Callable[[int], int | None]
) -> NumbindClientError:
    """``exc`` about the caller's ``item`` when its message starts with ``field[i]``.

    ``position(i)`` maps index ``i`` of the request's repeated ``field`` to the item's 1-based
    position in the caller's input (None if it names none). Later ``field[j]`` in the message
    are rewritten the same way; anything else is returned unchanged.
    """
    path = re.compile(rf"{re.escape(field)}\[(\d+)\]")
    lead = path.match(exc.reason)
    if lead is None:
        return exc
    where = position(int(lead.group(1)))
    if where is None:
        return exc
    rest = exc.reason[lead.end() :]
    rest = rest[1:] if rest.startswith(".") else rest.removeprefix(":").lstrip()

    def name(match: re.Match[str]) -> str:
        other = position(int(match.group(1)))
        return match.group(0) if other is None else f"{item} {other:,}"

    return exc.at(item, where, path.sub(name, rest) or exc.reason)


def offset_positions(start: int, count: int) -> Callable[[int], int | None]:
    """Index i of a request holding the caller's items start+1 .. start+count."""
    return lambda i: start + i + 1 if 0 <= i < count else None


def list_positions(positions: list[int]) -> Callable[[int], int | None]:
    """Index i of a request whose items are the caller's ``positions`` (1-based) in order."""
    return lambda i: positions[i] if 0 <= i < len(positions) else None
