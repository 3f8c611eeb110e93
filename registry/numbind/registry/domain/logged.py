"""What the lifecycle authority writes to its verifiable log, as pure values.

One leaf per applied or superseded lifecycle event, per revocation trigger, per order, per
order outcome and per key rotation (DESIGN.md, "A verifiable registry"). Each builder
returns a `LogLeaf`: the entry's canonical bytes (numbind.protocol.log_entries), what it is
about (`ref`: an order or revocation id) and who may open it (`holder_pk`; None is public).
No builder takes an account_ref or a holder's subject, so no opening can carry one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from numbind.protocol.log_entries import canonical, orders_digest
from numbind.registry.domain.types import (
    AckOutcome,
    EventCause,
    EventKind,
    LifecycleKind,
    OrderState,
)

# Enum names by value, looked up per leaf: `OrderState(state).name` costs ~1.5 us (the
# enum call, then the name property), a dict lookup ~0.05 us, and a REISSUED batch writes
# an order leaf and an ack leaf per binding. Same text: the bodies stay byte-identical.
_LIFECYCLE = {int(k): k.name for k in LifecycleKind}
_KIND = {int(k): k.name for k in EventKind}
_CAUSE = {int(c): c.name for c in EventCause}
_STATE = {int(s): s.name for s in OrderState}
_OUTCOME = {int(o): o.name for o in AckOutcome}


@dataclass(frozen=True)
class LogLeaf:
    kind: str
    ref: str
    holder_pk: int | None
    body: bytes


def lifecycle(
    *,
    carrier_pk: int,
    carrier: str,
    token: bytes,
    key_id: str,
    kind: int,
    effective_us: int,
    applied: bool,
    tenure_start_us: int | None,
    revocation_id: str | None,
) -> LogLeaf:
    body = canonical(
        {
            "t": "lifecycle",
            "carrier": carrier,
            "token": token.hex(),
            "key_id": key_id,
            "kind": _LIFECYCLE[kind],
            "effective_us": effective_us,
            "applied": applied,
            "tenure_start_us": tenure_start_us,
            "revocation": revocation_id,
        }
    )
    return LogLeaf("lifecycle", "", carrier_pk, body)


@dataclass(frozen=True)
class LoggedOrder:
    id: str
    platform_pk: int
    platform: str
    kind: EventKind
    cause: EventCause
    token: bytes
    key_id: str
    tenure_start_us: int | None


def revocation(
    *, revocation_id: str, cause: EventCause, carrier_pk: int, carrier: str, orders: Sequence[str]
) -> LogLeaf:
    body = canonical(
        {
            "t": "revocation",
            "id": revocation_id,
            "cause": _CAUSE[cause],
            "carrier": carrier,
            "orders": len(orders),
            "orders_sha256": orders_digest(orders),
        }
    )
    return LogLeaf("revocation", revocation_id, carrier_pk, body)


def order(o: LoggedOrder, revocation_id: str) -> LogLeaf:
    body = canonical(
        {
            "t": "order",
            "id": o.id,
            "revocation": revocation_id,
            "platform": o.platform,
            "kind": _KIND[o.kind],
            "cause": _CAUSE[o.cause],
            "token": o.token.hex(),
            "key_id": o.key_id,
            "tenure_start_us": o.tenure_start_us,
        }
    )
    return LogLeaf("order", o.id, o.platform_pk, body)


def ack(*, order_id: str, platform_pk: int, platform: str, state: int, outcome: int) -> LogLeaf:
    body = canonical(
        {
            "t": "ack",
            "order": order_id,
            "platform": platform,
            "state": _STATE[state],
            "outcome": _OUTCOME[outcome],
        }
    )
    return LogLeaf("ack", order_id, platform_pk, body)


def key_rotation(*, key_id: str, public_key: bytes, previous_key_id: str | None) -> LogLeaf:
    body = canonical(
        {
            "t": "key",
            "key_id": key_id,
            "public_key": public_key.hex(),
            "previous": previous_key_id,
        }
    )
    return LogLeaf("key", key_id, None, body)
