"""Every limit of the numbind.v1 wire contract, in one place.

The registry enforces these; the SDK checks them before sending so a bad item fails with
its position on the client instead of failing a whole batch on the server. Change a limit
here and both sides follow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "DEFAULT_REQUEST_BYTES",
    "EARLIEST_INSTANT",
    "EARLIEST_US",
    "FUTURE_SKEW",
    "FUTURE_SKEW_US",
    "MAX_ACCOUNT_REF",
    "MAX_ACKS",
    "MAX_BINDINGS",
    "MAX_DISPLAY_NAME",
    "MAX_EVALUATE",
    "MAX_HOLDER_NUMBERS",
    "MAX_HOLDER_PLATFORMS",
    "MAX_LIFECYCLE_EVENTS",
    "MAX_MESSAGE_BYTES",
    "MAX_PAGE_SIZE",
    "MAX_REASON",
    "MAX_REASSIGNED_QUERIES",
    "MAX_RECEIVE_BYTES",
    "REKEY_PROGRESS_KEY",
    "REQUEST_BYTES",
    "RETRY_AFTER_KEY",
    "STORE_KEY_ID_KEY",
    "TOKEN_BYTES",
    "display_name_problem",
    "instant_problem",
    "request_limit",
]

# A token: the canonical encoding of one ristretto255 element, k*HashToGroup(E.164)
# (see numbind.protocol.voprf).
TOKEN_BYTES = 32
# A platform's opaque account reference (the SDK's HMAC is 32 bytes).
MAX_ACCOUNT_REF = 64

# Items per request.
MAX_EVALUATE = 4096  # Tokens.Evaluate blinded elements
MAX_BINDINGS = 10_000  # PublishBindings / WithdrawBindings
MAX_PAGE_SIZE = 10_000  # ListBindings
MAX_LIFECYCLE_EVENTS = 10_000  # ReportLifecycle
MAX_REASSIGNED_QUERIES = 1_000  # CheckReassigned
MAX_ACKS = 10_000  # AckEvents
MAX_HOLDER_NUMBERS = 20  # QueryBindings attestations (one subscriber's numbers)
MAX_HOLDER_PLATFORMS = 1_000  # RequestRevocation platform_ids
MAX_REASON = 500  # characters of a REJECTED ack's reason
# A platform's or carrier's name as holders read it.
MAX_DISPLAY_NAME = 64

# Every instant on the wire (bound_at, effective_at, since): set, not before 1990, and not
# in the future beyond a little clock skew.
EARLIEST_INSTANT = datetime(1990, 1, 1, tzinfo=UTC)
EARLIEST_US = 631_152_000 * 1_000_000
FUTURE_SKEW = timedelta(minutes=5)
FUTURE_SKEW_US = 300 * 1_000_000

# The largest gRPC message either side sends or accepts.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# The largest legal request of each RPC, in bytes on the wire: the item limits above times
# each item at its largest (field headers included), plus room for the request id and
# the like. tests/unit/test_request_limits.py builds every maximal request and checks it
# fits, and that no limit is more than twice what it needs. The registry refuses a bigger
# request before parsing it; gRPC refuses anything above MAX_RECEIVE_BYTES before
# buffering it.
_SLACK = 1024
_SIGNED_ATTESTATION = 1024 + 64 + 8  # attestation.MAX_ATTESTATION_BYTES, signature, headers
REQUEST_BYTES: dict[str, int] = {
    "/numbind.v1.Tokens/Evaluate": MAX_EVALUATE * (2 + 32) + _SLACK,
    # Binding: token (key id, 32 bytes) 56, account_ref 66, bound_at 19, kind 2, header 3.
    "/numbind.v1.Platforms/PublishBindings": MAX_BINDINGS * 150 + _SLACK,
    "/numbind.v1.Platforms/WithdrawBindings": MAX_BINDINGS * 130 + _SLACK,
    "/numbind.v1.Platforms/CheckReassigned": MAX_REASSIGNED_QUERIES * 80 + _SLACK,
    # An ack: order id 38, outcome 2, a reason of 500 characters at 4 bytes each, headers.
    "/numbind.v1.Platforms/AckEvents": MAX_ACKS * (48 + 4 * MAX_REASON) + _SLACK,
    "/numbind.v1.Carriers/ReportLifecycle": MAX_LIFECYCLE_EVENTS * 80 + _SLACK,
    "/numbind.v1.Holders/QueryBindings": MAX_HOLDER_NUMBERS * _SIGNED_ATTESTATION + _SLACK,
    "/numbind.v1.Holders/RequestRevocation": (
        _SIGNED_ATTESTATION + MAX_HOLDER_PLATFORMS * (2 + 63) + _SLACK
    ),
}
# Any other request (ids, a CSR, a key, a cursor): gRPC's own default.
DEFAULT_REQUEST_BYTES = 4 * 1024 * 1024
# What the registry's gRPC server accepts at all: the largest legal request.
MAX_RECEIVE_BYTES = max(DEFAULT_REQUEST_BYTES, *REQUEST_BYTES.values())


def request_limit(method: str) -> int:
    """The most bytes a request to `method` ("/numbind.v1.Service/Method") may have."""
    return REQUEST_BYTES.get(method, DEFAULT_REQUEST_BYTES)


# Trailing metadata on RESOURCE_EXHAUSTED (and UNAVAILABLE during a store re-key): how
# long to wait before retrying, in ms.
RETRY_AFTER_KEY = "retry-after-ms"
# Trailing metadata on UNAVAILABLE while the store is re-keyed after a rotation: rows
# done and total, "done/total" (total may be "?" before it is counted).
REKEY_PROGRESS_KEY = "rekey-progress"
# Trailing metadata on FAILED_PRECONDITION when a digest or list named a key other than
# the one every binding is held under: that key's id.
STORE_KEY_ID_KEY = "store-key-id"


def instant_problem(moment: datetime, now: datetime | None = None) -> str | None:
    """Why ``moment`` cannot be an instant on the wire, or None when it can."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "no UTC offset (write Z or +hh:mm)"
    if moment < EARLIEST_INSTANT:
        return "before 1990-01-01"
    if moment > (now or datetime.now(UTC)) + FUTURE_SKEW:
        return "in the future"
    return None


def display_name_problem(value: str) -> str | None:
    """What a display name must be, if ``value`` is not one; None when it is: 1..64 characters of
    printable text (no control or format characters, no line breaks), not blank and
    without leading or trailing space. One rule for every way a principal is named."""
    if not value.strip():
        return "a name shown to holders"
    if len(value) > MAX_DISPLAY_NAME:
        return f"at most {MAX_DISPLAY_NAME}"
    if not value.isprintable():
        return "printable text (no control characters or line breaks)"
    if value != value.strip():
        return "no leading or trailing space"
    return None
