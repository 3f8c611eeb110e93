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
            "kind": LifecycleKind(kind).name,
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
            "cause": cause.name,
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
            "kind": o.kind.name,
            "cause": o.cause.name,
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
            "state": OrderState(state).name,
            "outcome": AckOutcome(outcome).name,
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
