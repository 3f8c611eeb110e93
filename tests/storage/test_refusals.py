"""The refusals a holder's view shows (storage.orders.revoke_orders_for_bindings): a binding's
latest REVOKE order when its platform refused it, and nothing once a later order is open or
done, or for a binding bound anew after the order was made."""

from __future__ import annotations

from dataclasses import replace

from numbind.registry.domain.types import EventCause, EventKind, OrderState, now_us
from numbind.registry.storage import order_acks, orders, principals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database
from sqlalchemy.orm import Session

from tests.storage.test_feed_store import _with_orders


def _ack(db: Database, rid: str, acks: dict[int, tuple[OrderState, str]]) -> dict[int, str]:
    """Ack the revocation's orders of the bindings named (binding pk -> state, reason);
    returns binding pk -> order id."""

    def act(s: Session) -> dict[int, str]:
        ids = [oid for oids in orders.order_ids(s, rid).values() for oid in oids]
        found = order_acks.orders_by_id(s, ids)
        mine = {t.binding_pk: t for t in found.values() if t.binding_pk in acks}
        order_acks.record_acks(
            s,
            [(t, int(acks[b][0]), 1, acks[b][1]) for b, t in mine.items()],
        )
        return {b: t.id for b, t in mine.items()}

    return db.transact(act)


def _refused(db: Database, bindings: list[StoredBinding]) -> dict[int, orders.Refusal]:
    return db.transact(
        lambda s: orders.revoke_orders_for_bindings(s, bindings, now_us()).refused, write=False
    )


def test_only_a_binding_whose_latest_order_was_refused_has_a_refusal(db: Database) -> None:
    _, stored, rid = _with_orders(db, 4, ordered=3)
    refused, done, open_, never = stored
    ids = _ack(
        db, rid, {refused.pk: (OrderState.REJECTED, "open loan"), done.pk: (OrderState.DONE, "")}
    )
    got = _refused(db, stored)
    assert list(got) == [refused.pk]
    r = got[refused.pk]
    assert (r.revocation_id, r.order_id, r.reason) == (rid, ids[refused.pk], "open loan")
    assert r.acked_us > 0 and open_.pk not in got and never.pk not in got

    # A binding published again with a later bound_at is a new binding: not this refusal.
    anew = replace(refused, binding=replace(refused.binding, bound_us=2**62))
    assert _refused(db, [anew]) == {}

    # A later order for the refused binding supersedes it while open, and for good once done.
    def again(s: Session) -> str:
        carrier = principals.register(s, "carrier", "c-again").pk
        later = orders.new_revocation(s, EventCause.HOLDER_REQUEST, carrier)
        new = [orders.NewOrder(refused, EventKind.REVOKE, EventCause.HOLDER_REQUEST, 1)]
        orders.append(s, later, new, 60.0)
        return later

    later = db.transact(again)
    assert _refused(db, stored) == {}
    _ack(db, later, {refused.pk: (OrderState.DONE, "")})
    assert _refused(db, stored) == {}
