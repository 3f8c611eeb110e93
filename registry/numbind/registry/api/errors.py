"""The one place that turns errors into gRPC statuses: the outermost interceptor.

A NumbindError gets the status of its class from a static table and its own message.
Anything else becomes INTERNAL with a generic message and a reference; the traceback goes
to the log under that reference, never to the caller.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from numbind.protocol.limits import REKEY_PROGRESS_KEY, RETRY_AFTER_KEY, STORE_KEY_ID_KEY
from numbind.registry import errors as e
from numbind.registry.api.interceptors import GuardInterceptor
from numbind.registry.api.types import Ctx

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
STATUS_TABLE: tuple[tuple[type[e.NumbindError], grpc.StatusCode], ...] = (
    (e.MalformedAttestation, grpc.StatusCode.INVALID_ARGUMENT),
    (e.AttestationLifetimeTooLong, grpc.StatusCode.INVALID_ARGUMENT),
    (e.BadSignature, grpc.StatusCode.UNAUTHENTICATED),
    (e.AttestationExpired, grpc.StatusCode.FAILED_PRECONDITION),
    (e.AttestationNotYetValid, grpc.StatusCode.FAILED_PRECONDITION),
    (e.AttestationReplayed, grpc.StatusCode.ALREADY_EXISTS),
    (e.WrongPurpose, grpc.StatusCode.PERMISSION_DENIED),
    (e.WrongCarrier, grpc.StatusCode.PERMISSION_DENIED),
    (e.AttestationError, grpc.StatusCode.PERMISSION_DENIED),
    (e.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (e.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (e.NotFound, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (e.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (e.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (e.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (e.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.Unavailable, grpc.StatusCode.UNAVAILABLE),
)
INTERNAL_MESSAGE = "internal error (ref {ref}); the registry log has the details"


def status_for(exc: e.NumbindError) -> grpc.StatusCode:
    for cls, code in STATUS_TABLE:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


async def abort_with(context: Ctx, exc: BaseException, method: str) -> None:
    """Abort the call with the status for exc. Always raises grpc.aio.AbortError."""
    if isinstance(exc, e.NumbindError):
        metadata: list[tuple[str, str]] = []
        if isinstance(exc, e.ResourceExhausted | e.RekeyInProgress):
            metadata.append((RETRY_AFTER_KEY, str(max(1, int(exc.retry_after * 1000)))))
        if isinstance(exc, e.RekeyInProgress):
            total = "?" if exc.rows_total is None else str(exc.rows_total)
            metadata.append((REKEY_PROGRESS_KEY, f"{exc.rows_done}/{total}"))
        if isinstance(exc, e.NotStoreKey):
            metadata.append((STORE_KEY_ID_KEY, exc.store_key_id))
        if metadata:
            context.set_trailing_metadata(tuple(metadata))
        await context.abort(status_for(exc), exc.message)
    ref = uuid.uuid4().hex[:12]
    log.error("internal error (ref %s) in %s", ref, method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE.format(ref=ref))


@asynccontextmanager
async def mapped_errors(method: str, context: Ctx) -> AsyncIterator[None]:
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await abort_with(context, exc, method)


def error_interceptor() -> GuardInterceptor:
    """Give it to the server first, so it is the outermost interceptor."""
    return GuardInterceptor(mapped_errors)
