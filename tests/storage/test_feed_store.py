"""Orders, feed, numbers and idempotency storage, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import os
import threading
from functools import partial

import pytest
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventCause,
    EventKind,
    NumberState,
    Token,
)
from numbind.registry.errors import AlreadyExists
from numbind.registry.storage import feed, idempotency, numbers, orders, principals
from numbind.registry.storage.bindings import StoredBinding
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow, OrderRow
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from tests.tokens import token_in_bucket

T0 = 1_700_000_000_000_000


def binding_row(platform_pk: int, i: int) -> dict[str, object]:
    """An ACTIVE binding's row in bucket `i` (a token of its own in that bucket)."""
    return {
        "platform_pk": platform_pk,
        "key_id": "0123456789abcdef",
        "token": token_in_bucket(i),
        "account_ref": b"acct",
        "bound_us": T0,
        "kind": 1,
        "state": int(BindingState.ACTIVE),
        "bucket": i,
        "digest": bytes(32),
        "updated_us": T0,
    }


def _binding(session: Session, platform_pk: int, i: int) -> StoredBinding:
    row = binding_row(platform_pk, i)
    token = row["token"]
    assert isinstance(token, bytes)
    pk = session.execute(insert(BindingRow).returning(BindingRow.pk), [row]).scalar_one()
    b = Binding(Token("0123456789abcdef", token), b"acct", T0, BindingKind.LOGIN)
    return StoredBinding(pk, platform_pk, b, BindingState.ACTIVE)


def _platform_pk(session: Session, name: str) -> int:
    return principals.register(session, "platform", name).pk


def _with_orders(
    db: Database, count: int, ordered: int | None = None
) -> tuple[int, list[StoredBinding], str]:
    """A carrier, a platform with `count` bindings, and one REISSUED revocation with a REVOKE
    order for each of the first `ordered` (default: all): (platform pk, bindings,
    revocation id)."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "c-orders").pk)
    plat = db.transact(lambda s: _platform_pk(s, "p-orders"))
    stored = db.transact(lambda s: [_binding(s, plat, i) for i in range(count)])

    def append(s: Session) -> str:
        rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
        wanted = stored[: count if ordered is None else ordered]
        new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in wanted]
        orders.append(s, rid, new, 60.0)
        return rid

    return plat, stored, db.transact(append)


def _bindings(session: Session, platform_pk: int) -> list[StoredBinding]:
    return [_binding(session, platform_pk, i) for i in range(40)]


def _feed_seqs(session: Session, platform_pk: int) -> list[int]:
    return list(
        session.scalars(
            select(OrderRow.feed_seq)
            .where(OrderRow.platform_pk == platform_pk)
            .order_by(OrderRow.feed_seq)
        )
    )


def test_concurrent_appends_keep_each_feed_gap_free(db: Database) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
    plats = [db.transact(partial(_platform_pk, name=n)) for n in ("p1", "p2")]
    bindings = {p: db.transact(partial(_bindings, platform_pk=p)) for p in plats}
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(offset, 40, 4):

                def tx(s: Session, i: int = i) -> None:
                    rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
                    orders.append(
                        s,
                        rid,
                        [
                            orders.NewOrder(
                                bindings[p][i], EventKind.REVOKE, EventCause.REISSUED, T0
                            )
                            for p in plats
                        ],
                        3600,
                    )

                db.transact(tx)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for p in plats:
        assert db.transact(partial(_feed_seqs, platform_pk=p)) == list(range(1, 41))
        assert db.transact(partial(feed.feed_head, platform_pk=p)) == 40
        items = db.transact(partial(feed.read_feed, platform_pk=p, after_seq=35, limit=100))
        assert [i.seq for i in items] == [36, 37, 38, 39, 40]
    revoking = db.transact(
        lambda s: s.scalar(
            select(func.count())
            .select_from(BindingRow)
            .where(BindingRow.state == int(BindingState.REVOKING))
        )
    )
    assert revoking == 80


def test_one_revocation_appended_in_chunks_gives_each_order_one_feed_event(
    db: Database,
) -> None:
    """A member files a reissue's orders under the hub's one revocation, chunk by chunk:
    each chunk's feed events point at that chunk's orders, none twice, none missed."""
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
    plat = db.transact(lambda s: principals.register(s, "platform", "p1").pk)
    bound = db.transact(lambda s: [_binding(s, plat, i) for i in range(12)])
    rid = db.transact(lambda s: orders.new_revocation(s, EventCause.REISSUED, carrier))
    for part in (bound[:5], bound[5:9], bound[9:]):

        def tx(s: Session, part: list[StoredBinding] = part) -> None:
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, T0) for b in part]
            orders.append(s, rid, new, 3600)

        db.transact(tx)
    rows = db.transact(
        lambda s: s.execute(
            select(OrderRow.feed_seq, OrderRow.binding_pk, OrderRow.revocation_id)
            .where(OrderRow.platform_pk == plat)
            .order_by(OrderRow.feed_seq)
        ).all()
    )
    assert [r[0] for r in rows] == list(range(1, 13))
    assert [r[1] for r in rows] == [b.pk for b in bound]
    assert {r[2] for r in rows} == {rid}


def test_numbers_round_trip(db: Database) -> None:
    carrier = db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
    rec = NumberRecord(carrier, NumberState.ACTIVE, T0, T0, T0 - 5, T0)
    token = os.urandom(32)
    db.transact(lambda s: numbers.save(s, {token: rec}, {}, "0123456789abcdef"))
    assert db.transact(lambda s: numbers.get(s, token)) == rec
    moved = NumberRecord(carrier, NumberState.PORTING, T0, T0, T0 - 5, T0 + 1)
    db.transact(lambda s: numbers.save(s, {token: moved}, {token: token}, "0123456789abcdef"))
    assert db.transact(lambda s: numbers.load(s, [token, os.urandom(32)])) == {token: moved}


def test_idempotency_answers_retries_and_refuses_reuse(db: Database) -> None:
    pk = db.transact(lambda s: principals.register(s, "platform", "p1").pk)
    calls: list[int] = []

    def act() -> dict[str, object]:
        calls.append(1)
        return {"n": len(calls)}

    first = db.transact(lambda s: idempotency.once(s, pk, "M", "r1", b"a" * 32, act))
    again = db.transact(lambda s: idempotency.once(s, pk, "M", "r1", b"a" * 32, act))
    assert first == again == {"n": 1} and len(calls) == 1
    with pytest.raises(AlreadyExists, match="r1"):
        db.transact(lambda s: idempotency.once(s, pk, "M", "r1", b"b" * 32, act))
    # Another method or principal has its own namespace.
    assert db.transact(lambda s: idempotency.once(s, pk, "N", "r1", b"b" * 32, act)) == {"n": 2}


def test_a_revocations_order_ids_are_read_whole_by_either_call(db: Database) -> None:
    _, _, rid = _with_orders(db, 12, ordered=9)
    carrier = db.transact(lambda s: principals.register(s, "carrier", "c-other").pk)
    other = db.transact(lambda s: orders.new_revocation(s, EventCause.REISSUED, carrier))
    by_platform = db.transact(lambda s: orders.order_ids(s, rid))
    ids = db.transact(lambda s: orders.ids_of(s, rid))
    assert len(ids) == 9 and len(set(ids)) == 9
    assert sorted(ids) == sorted(i for per in by_platform.values() for i in per)
    assert db.transact(lambda s: orders.ids_of(s, other)) == []
