"""What a platform hands the SDK and gets back: bindings, summaries, feed events, answers.

Frozen dataclasses and enums only; the protobuf forms live in ``numbind.sdk.wire``. Phone
numbers and account ids stay out of every ``repr`` (and so out of logs).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from numbind.protocol.digest import binding_digest
from numbind.protocol.limits import MAX_ACCOUNT_REF, TOKEN_BYTES, instant_problem

__all__ = [
    "AckOutcome",
    "BindingKey",
    "BucketDigest",
    "EventCause",
    "EventKind",
    "FeedEvent",
    "Kind",
    "NumberAccount",
    "PublishSummary",
    "Reassigned",
    "Record",
    "Row",
    "SyncSummary",
    "WithdrawSummary",
    "bound_at_problem",
    "from_us",
    "order_reference",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

# Inside the SDK a binding is a plain tuple: 10 million dataclasses would be the memory bill.
Item = tuple[bytes, bytes, int, int]  # token, account_ref, bound_us, kind
Key = tuple[bytes, bytes]  # token, account_ref


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (the registry's resolution)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must carry a UTC offset")
    return (moment - _EPOCH) // _ONE_US  # exact integer arithmetic, never via a float


def from_us(us: int) -> datetime:
    """The UTC datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def bound_at_problem(moment: datetime, now: datetime | None = None) -> str | None:
    """Why ``moment`` cannot be a binding's bound_at, or None when it can."""
    return instant_problem(moment, now)


class Kind(enum.IntEnum):
    """What a binding lets the account do with the number (numbind.v1.BindingKind)."""

    LOGIN = 1
    RECOVERY = 2
    PAYMENT = 3
    NOTIFICATION = 4
    OTHER = 5

    @classmethod
    def parse(cls, text: str) -> Kind:
        """Case-insensitive name (``login``, ``Payment``); ValueError for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"kind: want one of {', '.join(k.name for k in cls)}") from None


class NumberAccount(Protocol):
    """Anything naming a number and an account: a Row, or a caller's own type."""

    @property
    def phone(self) -> str: ...
    @property
    def account_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Row:
    """One binding as the platform knows it. The phone stays out of ``repr`` (and logs)."""

    phone: str = field(repr=False)
    account_id: str = field(repr=False)
    bound_at: datetime
    kind: Kind = Kind.LOGIN

    def __post_init__(self) -> None:
        if not self.account_id:
            raise ValueError("account_id: empty")
        problem = bound_at_problem(self.bound_at)
        if problem is not None:
            raise ValueError(f"bound_at: {problem}")
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))


@dataclass(frozen=True, slots=True)
class BindingKey:
    """Names one binding of this platform: a token (under key_id) and an account_ref."""

    token: bytes
    key_id: str
    account_ref: bytes

    def __post_init__(self) -> None:
        _check_token_ref(self.token, self.account_ref)


@dataclass(frozen=True, slots=True)
class Record:
    """A binding with its token already computed, as published and as listed back."""

    token: bytes
    key_id: str
    account_ref: bytes
    bound_at: datetime
    kind: Kind

    def __post_init__(self) -> None:
        _check_token_ref(self.token, self.account_ref)
        if self.bound_at.tzinfo is None:
            raise ValueError("bound_at: no UTC offset")

    @property
    def key(self) -> BindingKey:
        return BindingKey(self.token, self.key_id, self.account_ref)

    def digest(self) -> bytes:
        """This binding's share of its bucket digest (numbind.protocol.digest)."""
        return binding_digest(
            self.key_id, self.token, self.account_ref, to_us(self.bound_at), self.kind
        )


def _check_token_ref(token: bytes, account_ref: bytes) -> None:
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"token: got {len(token)} bytes, want {TOKEN_BYTES}")
    if not 1 <= len(account_ref) <= MAX_ACCOUNT_REF:
        raise ValueError(f"account_ref: got {len(account_ref)} bytes, want 1..{MAX_ACCOUNT_REF}")


@dataclass(frozen=True)
class BucketDigest:
    bucket: int
    count: int
    digest: bytes


@dataclass(frozen=True)
class PublishSummary:
    rows: int
    inserted: int
    updated: int
    unchanged: int
    # Rows naming a binding already earlier in the same batch (the later one was sent).
    duplicates: int
    batches: int
    seconds: float
    # Bindings the registry had revoked (the holder's request or a reissue, acked by this
    # platform), sent again with a bound_at no later than the revocation: left revoked.
    # Remove those numbers from your export; a bound_at after the revocation binds anew.
    revoked: int = 0
    # Of the inserted and updated: bound before the number's last reissue, so the previous
    # holder's; the registry revoked them on arrival (a REVOKE event each in the feed).
    revoked_on_arrival: int = 0


@dataclass(frozen=True)
class WithdrawSummary:
    rows: int
    withdrawn: int
    not_found: int
    batches: int
    seconds: float


@dataclass(frozen=True)
class SyncSummary:
    rows: int  # snapshot rows read
    bindings: int  # distinct bindings in the snapshot
    duplicates: int  # rows naming a binding another row already named
    server_bindings: int  # on the registry before the sync, under key_id
    key_id: str
    bucket_bits: int
    buckets_total: int
    buckets_differing: int
    buckets_listed: int
    published: int  # added + changed
    added: int
    changed: int
    withdrawn: int
    dry_run: bool
    # Digests equal after the sync; None on a dry run. False means the registry changed
    # meanwhile (a revocation, a concurrent publish); the next sync picks it up.
    converged: bool | None
    seconds: float
    # The most this sync could withdraw (None: forced, no limit). By default the larger of
    # 10 % of the registry's bindings and 1,000, but not more than the larger of half of
    # them and 100 (numbind.sdk.sync_options.default_withdraw_limit).
    withdraw_limit: int | None = None
    # A dry run over the limit: why the real sync would refuse ("" when it would not).
    refusal: str = ""
    # Snapshot rows the registry had revoked (the holder's request or a reissue, acked by
    # this platform), skipped rather than republished; their 1-based positions in the
    # snapshot, in order (the first 1,000). A row whose bound_at is after the revocation is
    # a new binding and is published.
    revoked_skipped: int = 0
    revoked_positions: list[int] = field(default_factory=list)
    # Published bindings bound before their number's last reissue: the registry revoked
    # them on arrival (PublishSummary.revoked_on_arrival).
    revoked_on_arrival: int = 0


def order_reference(order_id: str) -> str:
    """The short form of an order id that a holder reads out and a platform looks up: its
    last 12 hex digits in upper case, in groups of four (``3F2A-9C21-7B4E``).

    The carrier app shows it beside a refusal so the new holder can quote it to the
    platform's customer service; platforms find the order by this suffix of its id. The
    last digits, not the first: order ids are time-ordered (version 7), so their first 12
    digits are the millisecond they were made, the same for every order of a reissue's
    chunk, where the last 12 are random (48 bits, as in a version 4 id).
    """
    digits = order_id.replace("-", "").upper()[-12:]
    return "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))


class Reassigned(enum.StrEnum):
    """The answer to "has this number had a new holder since D?" (equal to its name)."""

    REASSIGNED = "REASSIGNED"
    NOT_REASSIGNED = "NOT_REASSIGNED"
    NO_DATA = "NO_DATA"  # no carrier has reported anything for the number


# -- the event feed ---------------------------------------------------------------------


class AckOutcome(enum.IntEnum):
    UNBOUND = 1
    ALREADY_GONE = 2
    REJECTED = 3
    NOTED = 4


class EventKind(enum.IntEnum):
    REVOKE = 1
    NUMBER_DEACTIVATED = 2


class EventCause(enum.IntEnum):
    """Why an event exists; UNSPECIFIED for a cause this SDK does not know yet."""

    UNSPECIFIED = 0
    REISSUED = 1
    HOLDER_REQUEST = 2
    DEACTIVATED = 3


class AckSink(Protocol):
    """Where a FeedEvent sends its ack (its EventFeed)."""

    def ack(self, items: list[tuple[FeedEvent, AckOutcome, str]]) -> Awaitable[None]: ...


@dataclass
class FeedEvent:
    """One revocation order or notice from the platform's feed; ack it once handled."""

    seq: int
    order_id: str
    kind: EventKind
    cause: EventCause
    token: bytes
    key_id: str
    account_ref: bytes
    bound_at: datetime | None
    tenure_start: datetime | None
    deadline: datetime | None
    revocation_id: str
    _feed: AckSink = field(repr=False)
    # The order's leaf in the registry's verifiable log (None: made before the log).
    leaf_index: int | None = None

    @property
    def reference(self) -> str:
        """The order's short reference, as the holder sees it (order_reference)."""
        return order_reference(self.order_id)

    async def ack(self, outcome: AckOutcome | None = None, reason: str = "") -> None:
        """Ack this event; notices default to NOTED, revocations must name an outcome."""
        if outcome is None:
            if self.kind != EventKind.NUMBER_DEACTIVATED:
                raise ValueError("a revocation order needs an outcome")
            outcome = AckOutcome.NOTED
        await self._feed.ack([(self, outcome, reason)])
