"""Revocation on arrival: a binding published after its number was reissued, with a
bound_at before the reissue, is the previous holder's (DESIGN.md, "Principals and trust").

It is revoked in the publish's own transaction exactly as the reissue would have revoked
it had it been there: one order, one feed event, cause REISSUED, the tenure start the
reissue set. Late publishers (a nightly sync) are exactly the platforms that need this.
"""

from __future__ import annotations

from collections import defaultdict

from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.domain.types import BindingState, EventCause, EventKind, now_us
from numbind.registry.services import log_record
from numbind.registry.storage import bindings as store
from numbind.registry.storage import log, numbers, orders
from numbind.registry.storage.db import Session

_ACTIVE = BindingState.ACTIVE


def revoke_pre_tenure(
    session: Session, batch: store.PreparedBatch, deadline_seconds: float
) -> tuple[int, set[int]]:
    """Revoke the batch's ACTIVE bindings bound before their number's last reissue.

    MUST run in the publish's transaction, after the upsert. The numbers are read FOR
    UPDATE (PostgreSQL), which serialises this with a concurrent report on the same
    numbers: either the report sees the new binding and revokes it, or this sees the
    report's tenure. Returns (bindings revoked, platforms whose feeds grew)."""
    tokens = [StoreToken(t, batch.old.get(t)) for t in batch.tokens]
    records = numbers.load(session, tokens, lock=True)
    tenure = {t: r.last_reissued_us for t, r in records.items() if r.last_reissued_us}
    if not tenure:  # the common case: no number in the batch was ever reissued
        return 0, set()
    # row: (platform_pk, key_id, token, account_ref, bound_us, ...)
    candidates = {(r[2], r[3]) for r in batch.rows if r[2] in tenure and r[4] < tenure[r[2]]}
    if not candidates:
        return 0, set()
    live = store.live_for_tokens(session, [t for t in tokens if t.value in tenure])
    pre_tenure = [
        (value, b)
        for value, found in live.items()
        for b in found
        if b.platform_pk == batch.platform_pk
        and b.state == _ACTIVE
        and b.bound_us < tenure[value]
        and (value, b.binding.account_ref) in candidates
    ]
    now = now_us()
    # A binding withdrawn while its revocation order was out and now published again still
    # has that order open: it becomes REVOKING again, for that order's ack to revoke it. A
    # second order would ask the platform twice (each republish one more).
    ordered = orders.open_orders_for_bindings(session, [b for _, b in pre_tenure], now)
    still_ordered = [b for _, b in pre_tenure if b.pk in ordered]
    store.revoking_again(session, still_ordered, now)
    by_carrier: dict[int, list[orders.NewOrder]] = defaultdict(list)
    for value, b in pre_tenure:
        if b.pk not in ordered:
            by_carrier[records[value].carrier_pk].append(
                orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, tenure[value])
            )
    platforms: set[int] = set()
    revoked = len(still_ordered)
    trail: list[LogLeaf] = []
    carriers = log.principal_names(session, list(by_carrier))
    for carrier_pk in sorted(by_carrier):
        rid = orders.new_revocation(session, EventCause.REISSUED, carrier_pk)
        created: list[tuple[str, orders.NewOrder]] = []
        platforms |= orders.append(
            session, rid, by_carrier[carrier_pk], deadline_seconds, created=created
        )
        # Logged like the reissue's own orders: a trigger (opened by the number's carrier)
        # and one leaf per order (opened by the platform).
        trail += log_record.revocation(
            session, rid, EventCause.REISSUED, carrier_pk, carriers.get(carrier_pk, ""), created
        )
        revoked += len(by_carrier[carrier_pk])
    log.append(session, trail)
    return revoked, platforms
