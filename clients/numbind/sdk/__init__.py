"""The numbind SDK: everything a platform or a carrier needs, importable from here.

    from numbind.sdk import Bundle, PlatformClient, Row

    async with PlatformClient(Bundle.load("acme-bundle")) as client:
        await client.publish(rows)               # tokenised on the client, never a number sent
        await client.sync(every_current_row)     # nightly: moves only the difference
        async for event in client.events():      # revocation orders; resume after a crash
            ...
            await event.ack(AckOutcome.UNBOUND)

Clients: ``PlatformClient`` (bindings, sync, the feed, reassigned-since), ``CarrierClient``
(lifecycle reports, holder queries and revocations), ``Tokenizer`` (numbers -> tokens, proofs
checked) and ``EventFeed`` (the feed over a channel of your own). Every failure is a
``NumbindClientError`` with an ``ErrorCode`` (numbind.sdk.errors draws the tree); a bad
number is ``InvalidNumber``. No grpc type is raised or returned.
"""

from numbind.protocol.bundle import Bundle, BundleError
from numbind.sdk.account_refs import AccountRefs
from numbind.sdk.carrier import CarrierClient
from numbind.sdk.carrier_model import (
    Attestation,
    Lifecycle,
    LifecycleReport,
    NumberView,
    PlatformView,
    RefusedRevocation,
    ReportSummary,
    RevocationProgress,
    RevocationStatus,
    Scope,
    UnavailableRegistry,
)
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import (
    CertificateMismatch,
    Conflict,
    ErrorCode,
    InvalidRequest,
    KeyRotated,
    NotFound,
    NumbindClientError,
    PermissionDenied,
    ProofError,
    QuotaExceeded,
    Refused,
    RekeyInProgress,
    ServerError,
    SyncAborted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from numbind.sdk.feed import EventFeed
from numbind.sdk.model import (
    AckOutcome,
    BindingKey,
    BucketDigest,
    EventCause,
    EventKind,
    FeedEvent,
    Kind,
    NumberAccount,
    PublishSummary,
    Reassigned,
    Record,
    Row,
    SyncSummary,
    WithdrawSummary,
    order_reference,
)
from numbind.sdk.phone import InvalidNumber
from numbind.sdk.platform import PlatformClient
from numbind.sdk.progress import Progress, ProgressCallback, TqdmProgress
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.tokenizer import Tokenizer, TokenResult

__all__ = [
    "AccountRefs",
    "AckOutcome",
    "Attestation",
    "BindingKey",
    "BucketDigest",
    "Bundle",
    "BundleError",
    "CarrierClient",
    "CertificateMismatch",
    "Conflict",
    "ErrorCode",
    "EventCause",
    "EventFeed",
    "EventKind",
    "FeedEvent",
    "InvalidNumber",
    "InvalidRequest",
    "KeyRotated",
    "Kind",
    "Lifecycle",
    "LifecycleReport",
    "NotFound",
    "NumberAccount",
    "NumberView",
    "NumbindClientError",
    "PermissionDenied",
    "PlatformClient",
    "PlatformView",
    "Progress",
    "ProgressCallback",
    "ProofError",
    "PublishSummary",
    "QuotaExceeded",
    "Reassigned",
    "Record",
    "Refused",
    "RefusedRevocation",
    "RekeyInProgress",
    "ReportSummary",
    "RetryPolicy",
    "RevocationProgress",
    "RevocationStatus",
    "Row",
    "Scope",
    "ServerError",
    "SyncAborted",
    "SyncSummary",
    "TokenResult",
    "Tokenizer",
    "TqdmProgress",
    "Unauthenticated",
    "Unavailable",
    "UnavailableRegistry",
    "Unimplemented",
    "WithdrawSummary",
    "order_reference",
    "secure_channel",
]
