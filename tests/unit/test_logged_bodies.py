"""domain.logged: leaf bodies name each enum by its `.name`, byte for byte, for every value
(the builders look names up in tables built once; a published log's leaves must not change)."""

from __future__ import annotations

from numbind.protocol.log_entries import canonical
from numbind.registry.domain import logged
from numbind.registry.domain.types import (
    AckOutcome,
    EventCause,
    EventKind,
    LifecycleKind,
    OrderState,
)


def _expected(entry: dict[str, object]) -> bytes:
    return canonical(entry)  # the encoding itself is pinned by test_log_canonical


def test_order_bodies_for_every_kind_and_cause() -> None:
    for kind in EventKind:
        for cause in EventCause:
            o = logged.LoggedOrder("o-1", 7, "bank", kind, cause, b"\x01\x02", "k1", 5)
            leaf = logged.order(o, "r-1")
            assert leaf.body == _expected(
                {
                    "t": "order",
                    "id": "o-1",
                    "revocation": "r-1",
                    "platform": "bank",
                    "kind": kind.name,
                    "cause": cause.name,
                    "token": "0102",
                    "key_id": "k1",
                    "tenure_start_us": 5,
                }
            )


def test_ack_bodies_for_every_state_and_outcome_given_as_ints() -> None:
    for state in OrderState:
        for outcome in AckOutcome:
            leaf = logged.ack(
                order_id="o-1",
                platform_pk=7,
                platform="bank",
                state=int(state),
                outcome=int(outcome),
            )
            assert leaf.body == _expected(
                {
                    "t": "ack",
                    "order": "o-1",
                    "platform": "bank",
                    "state": state.name,
                    "outcome": outcome.name,
                }
            )


def test_lifecycle_and_revocation_bodies() -> None:
    for kind in LifecycleKind:
        leaf = logged.lifecycle(
            carrier_pk=1,
            carrier="tel",
            token=b"\xff",
            key_id="k",
            kind=int(kind),
            effective_us=3,
            applied=True,
            tenure_start_us=None,
            revocation_id=None,
        )
        assert b'"kind":"%s"' % kind.name.encode() in leaf.body
    for cause in EventCause:
        leaf = logged.revocation(
            revocation_id="r", cause=cause, carrier_pk=1, carrier="tel", orders=["a"]
        )
        assert b'"cause":"%s"' % cause.name.encode() in leaf.body
