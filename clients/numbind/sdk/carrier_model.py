"""What a carrier hands the SDK and gets back: lifecycle reports, holder views, revocation
progress, attestations. The protobuf forms live in ``numbind.sdk.wire``.

Times from the registry are aware UTC datetimes, or None where the registry has none.
Order states are ``"PENDING"``, ``"DELIVERED"``, ``"DONE"``, ``"REJECTED"`` or ``"OVERDUE"``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from numbind.sdk.model import order_reference

__all__ = [
    "Attestation",
    "Lifecycle",
    "LifecycleReport",
    "NumberView",
    "PlatformView",
    "RefusedRevocation",
    "ReportSummary",
    "RevocationProgress",
    "RevocationStatus",
    "Scope",
    "UnavailableRegistry",
]


class Lifecycle(enum.IntEnum):
    ISSUED = 1
    DEACTIVATED = 2
    REISSUED = 3
    PORTED_OUT = 4
    PORTED_IN = 5


class Scope(enum.IntEnum):
    """Which bindings a holder's revocation covers."""

    ALL_PRE_TENURE = 1  # every binding made before the holder's tenure
    PLATFORMS = 2  # every binding at the named platforms
    ALL = 3


@dataclass(frozen=True)
class LifecycleReport:
    """One lifecycle event for a number this carrier serves. The phone stays out of repr."""

    phone: str = field(repr=False)
    event: Lifecycle
    effective_at: datetime


@dataclass(frozen=True)
class ReportSummary:
    events: int
    applied: int
    superseded: int
    orders_created: int
    notices_created: int
    revocation_ids: list[str]
    # Each event's leaf in the registry's verifiable log, in report order; the SDK proved
    # every one included in a verified checkpoint before returning (``log prove --event``).
    leaf_indices: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RefusedRevocation:
    """A revocation of a platform's bindings that the platform refused (acked REJECTED):
    they stay bound, and the platform is not asked again unless the holder names it."""

    revocation_id: str
    # The refused order, as the platform's feed carried it.
    order_id: str
    reason: str
    refused_at: datetime | None

    @property
    def reference(self) -> str:
        """What the holder quotes and the platform looks up: the order's short form
        (numbind.sdk.order_reference)."""
        return order_reference(self.order_id) if self.order_id else ""


@dataclass(frozen=True)
class PlatformView:
    """One platform holding bindings to a holder's number."""

    platform_id: str
    display_name: str
    category: str
    pre_tenure: bool  # bound before the holder's tenure: the previous holder's
    active_count: int
    earliest: datetime | None
    latest: datetime | None
    open_revocation: str  # "" when none is open
    open_state: str  # "" when none is open
    # The federation member (binding registry) the platform publishes to; "" when the
    # registry is a federation of one.
    registry_id: str = ""
    registry_name: str = ""
    # While no revocation is open: the latest one of these bindings the platform refused
    # (a reissue's or a holder's), with its reason. None when there is none.
    refused: RefusedRevocation | None = None


@dataclass(frozen=True)
class UnavailableRegistry:
    """A federation member the hub could not hear from: its platforms are missing from
    the answer (or a revocation has not reached it yet), for `reason`."""

    registry_id: str
    registry_name: str
    reason: str

    @property
    def label(self) -> str:
        return self.registry_name or self.registry_id


@dataclass(frozen=True)
class NumberView:
    e164: str
    tenure_start: datetime | None
    platforms: list[PlatformView]
    # How long platforms have to confirm a revocation before it shows OVERDUE: what the
    # carrier can promise the holder up front. None from a registry that does not say.
    order_deadline: timedelta | None = None
    # Members whose platforms could not be asked: the list above is incomplete for them.
    unavailable: tuple[UnavailableRegistry, ...] = ()


@dataclass(frozen=True)
class RevocationProgress:
    """One platform's part of a revocation."""

    platform_id: str
    display_name: str
    category: str
    state: str
    orders: int
    done: int
    rejected: int
    reason: str
    # The platform's order ids in this revocation, oldest first (what its feed carries).
    order_ids: tuple[str, ...] = ()
    # Open past this, the platform's part shows OVERDUE.
    deadline: datetime | None = None
    # The platform's last ack, if any.
    updated_at: datetime | None = None
    # The federation member the platform publishes to ("" in a federation of one).
    registry_id: str = ""
    registry_name: str = ""

    @property
    def reference(self) -> str:
        """A reference the holder can quote and the platform can look up: the short form
        of its first order id (numbind.sdk.order_reference), or "" without one."""
        return order_reference(self.order_ids[0]) if self.order_ids else ""


@dataclass(frozen=True)
class RevocationStatus:
    """A revocation's progress per platform, and the members it has not reached (or that
    did not answer): their platforms are missing from `platforms`."""

    platforms: list[RevocationProgress]
    unavailable: tuple[UnavailableRegistry, ...] = ()
    # The registry that took the report is still creating its orders (a large report's
    # are created in chunks after it commits): more platforms or orders follow.
    orders_pending: bool = False


@dataclass(frozen=True)
class Attestation:
    """A holder attestation: the exact signed bytes and the carrier's Ed25519 signature."""

    data: bytes
    signature: bytes
