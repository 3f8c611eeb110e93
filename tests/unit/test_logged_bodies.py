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


_ODD = ["", 'q"uote', "back\\slash", "tab\there", "\x00\x1f", "é中😀", "</script>", "\u2028"]


def test_order_and_ack_bodies_escape_strings_as_canonical_does() -> None:
    for text in _ODD:
        for tenure in (None, 0, -1, 2**63):
            o = logged.LoggedOrder(
                text, 3, text, EventKind.REVOKE, EventCause.REISSUED, b"\x00\xff", text, tenure
            )
            assert logged.order(o, text).body == canonical(
                {
                    "t": "order",
                    "id": text,
                    "revocation": text,
                    "platform": text,
                    "kind": "REVOKE",
                    "cause": "REISSUED",
                    "token": "00ff",
                    "key_id": text,
                    "tenure_start_us": tenure,
                }
            )
        leaf = logged.ack(
            order_id=text,
            platform_pk=3,
            platform=text,
            state=int(OrderState.DONE),
            outcome=int(AckOutcome.UNBOUND),
        )
        assert leaf.body == canonical(
            {"t": "ack", "order": text, "platform": text, "state": "DONE", "outcome": "UNBOUND"}
        )
