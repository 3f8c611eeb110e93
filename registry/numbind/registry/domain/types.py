"""Domain values shared by services, storage and the API layer. No grpc, no sqlalchemy.

Enum values are what the database stores; they match the wire enums' numbers where one
exists, so conversion is a cast, not a table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum

US = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000


class Role:
    PLATFORM = "platform"
    CARRIER = "carrier"
    ADMIN = "admin"
    # Principals an admin registers; a peer registry is a principal too (its own role),
    # but one that the installed federation manifest admits, never an admin.
    ALL = (PLATFORM, CARRIER, ADMIN)
    REGISTRY = "registry"


class KeyState(IntEnum):
    ACTIVE = 1
    EVALUATE_ONLY = 2
    RETIRED = 3


class BindingKind(IntEnum):
    LOGIN = 1
    RECOVERY = 2
    PAYMENT = 3
    NOTIFICATION = 4
    OTHER = 5


class BindingState(IntEnum):
    ACTIVE = 1
    # A revocation order is out and not yet acked; the binding still counts as active.
    REVOKING = 2
    REVOKED = 3
    WITHDRAWN = 4


LIVE_BINDING_STATES = (BindingState.ACTIVE, BindingState.REVOKING)


class LifecycleKind(IntEnum):
    ISSUED = 1
    DEACTIVATED = 2
    REISSUED = 3
    PORTED_OUT = 4
    PORTED_IN = 5


class NumberState(IntEnum):
    ACTIVE = 1
    DEACTIVATED = 2
    # Between the old carrier's PORTED_OUT and the new carrier's PORTED_IN.
    PORTING = 3


class EventKind(IntEnum):
    REVOKE = 1
    NUMBER_DEACTIVATED = 2


class EventCause(IntEnum):
    REISSUED = 1
    HOLDER_REQUEST = 2
    DEACTIVATED = 3


class OrderState(IntEnum):
    PENDING = 1
    DELIVERED = 2
    DONE = 3
    REJECTED = 4
    # Never stored: PENDING or DELIVERED past the deadline.
    OVERDUE = 5


class AckOutcome(IntEnum):
    UNBOUND = 1
    ALREADY_GONE = 2
    REJECTED = 3
    NOTED = 4


class Purpose(IntEnum):
    QUERY = 1
    REVOKE = 2


class TenureClass(IntEnum):
    PRE_TENURE = 1
    IN_TENURE = 2


class RevocationScope(IntEnum):
    ALL_PRE_TENURE = 1
    PLATFORMS = 2
    ALL = 3


class ReassignedAnswer(IntEnum):
    REASSIGNED = 1
    NOT_REASSIGNED = 2
    NO_DATA = 3


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as the auth interceptor hands it to servicers."""

    pk: int
    role: str
    name: str
    display_name: str = ""
    category: str = ""
    # The one certificate (SHA-256 of its DER) it may present; None: any the CA issued.
    cert_sha256: bytes | None = None
    # The principal's standing version when it was authenticated (services.standing).
    standing: int = 0

    @property
    def uri(self) -> str:
        return f"spiffe://numbind/{self.role}/{self.name}"


@dataclass(frozen=True)
class Token:
    key_id: str
    value: bytes


@dataclass(frozen=True)
class Binding:
    token: Token
    account_ref: bytes
    bound_us: int
    kind: BindingKind
