"""A reissue chunk's lookups and feed-head bumps (services.local_apply): on PostgreSQL each
is one statement however many tokens or platforms (storage.pgsets: a join of the tokens'
`unnest`, the feed heads bumped together), and each answers as the lookups of 500 and the
per-platform updates still do on SQLite."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from numbind.registry.domain.types import (
    BindingState,
    EventCause,
    EventKind,
    LifecycleKind,
)
from numbind.registry.storage import bindings, feed, local_apply, orders, pgsets, principals
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow, LifecycleEventRow, OrderRow
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.storage._plans import captured
from tests.storage.test_feed_store import T0, binding_row
from tests.tokens import token_in_bucket

MANY = 600  # more than one lookup of 500 on SQLite
PLATFORMS = 3


def _pg(db: Database) -> bool:
    return db.write_engine.dialect.name == "postgresql"


def _load(db: Database) -> tuple[int, list[int], list[tuple[int, int, bytes]]]:
    """A carrier, PLATFORMS platforms and MANY ACTIVE bindings spread over them, one token
    each: (carrier, platforms, [(binding pk, platform, token)])."""

    def tx(s: Session) -> tuple[int, list[int], list[tuple[int, int, bytes]]]:
        carrier = principals.register(s, "carrier", "c-lookups").pk
        plats = [principals.register(s, "platform", f"p-lookups-{i}").pk for i in range(PLATFORMS)]
        rows = [binding_row(plats[i % PLATFORMS], i) for i in range(MANY)]
        made = s.execute(
            insert(BindingRow).returning(BindingRow.pk, BindingRow.platform_pk, BindingRow.token),
            rows,
        )
        return carrier, plats, [(int(pk), int(p), bytes(t)) for pk, p, t in made]

    return db.transact(tx)


def test_live_bindings_of_many_tokens_are_one_join_and_skip_the_dead(db: Database) -> None:
    _, _, made = _load(db)
    withdrawn = made[7]
    db.transact(
        lambda s: s.execute(
            update(BindingRow)
            .where(BindingRow.pk == withdrawn[0])
            .values(state=int(BindingState.WITHDRAWN))
        )
    )
    tokens = [t for _, _, t in made] + [token_in_bucket(1)]  # one token nobody bound
    with captured(db.write_engine, lambda sql: " bindings" in sql) as seen:
        live = db.transact(lambda s: bindings.live_for_tokens(s, tokens))
    expected = {t: [(pk, p)] for pk, p, t in made if pk != withdrawn[0]}
    assert {t: [(b.pk, b.platform_pk) for b in bs] for t, bs in live.items()} == expected
    assert all(b.state is BindingState.ACTIVE for bs in live.values() for b in bs)
    assert len(seen) == (1 if _pg(db) else 2), seen


def test_earlier_tokens_are_the_revocations_own_at_or_below_the_cursor(db: Database) -> None:
    carrier, _, made = _load(db)
    tokens = [t for _, _, t in made]

    def events(s: Session) -> tuple[str, str]:
        mine = orders.new_revocation(s, EventCause.REISSUED, carrier)
        other = orders.new_revocation(s, EventCause.REISSUED, carrier)
        rows = [(mine, seq, tokens[seq]) for seq in range(1, 11)]  # seqs 1-10
        rows += [(other, 11, tokens[0]), (other, 12, tokens[11]), (mine, 20, tokens[5])]
        rows += [(mine, 21, tokens[30])]  # above the cursor
        s.execute(
            insert(LifecycleEventRow),
            [
                {
                    "token": token,
                    "key_id": "0123456789abcdef",
                    "carrier_pk": carrier,
                    "kind": int(LifecycleKind.REISSUED),
                    "effective_us": T0,
                    "recorded_us": T0,
                    "applied": True,
                    "revocation_id": rid,
                    "seq": seq,
                }
                for rid, seq, token in rows
            ],
        )
        return mine, other

    mine, other = db.transact(events)
    with captured(db.write_engine, lambda sql: "lifecycle_events" in sql) as seen:
        found = db.transact(lambda s: local_apply.earlier_tokens(s, mine, tokens, 20))
        theirs = db.transact(lambda s: local_apply.earlier_tokens(s, other, tokens, 11))
    assert found == set(tokens[1:11])  # not tokens[0]'s seq 11 (other's), nor seq 21
    assert theirs == {tokens[0]}
    # Each call one statement on PostgreSQL; two lookups of 500 each on SQLite.
    assert len(seen) == (2 if _pg(db) else 4), seen


def test_feed_heads_of_every_platform_move_together_and_stay_gap_free(db: Database) -> None:
    carrier, plats, made = _load(db)
    stored = db.transact(lambda s: bindings.live_for_tokens(s, [t for _, _, t in made]))
    every = [b for bs in stored.values() for b in bs]

    def append(part: list[Any]) -> None:
        def tx(s: Session) -> None:
            rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in part]
            assert orders.append(s, rid, new, 60.0) == set(plats)

        db.transact(tx)

    with captured(db.write_engine, lambda sql: "principals" in sql) as seen:
        append(every[:300])
        first = len(seen)
        append(every[300:])
    # PostgreSQL: the rows locked in pk order, then one UPDATE; SQLite: one UPDATE each.
    assert first == (2 if _pg(db) else PLATFORMS), seen
    for p in plats:

        def seqs(s: Session, p: int = p) -> list[int]:
            return list(
                s.scalars(
                    select(OrderRow.feed_seq)
                    .where(OrderRow.platform_pk == p)
                    .order_by(OrderRow.feed_seq)
                )
            )

        def head(s: Session, p: int = p) -> int:
            return feed.feed_head(s, p)

        assert db.transact(seqs) == list(range(1, MANY // PLATFORMS + 1)), p
        assert db.transact(head) == MANY // PLATFORMS


def test_feed_heads_move_past_a_transaction_holding_a_platforms_key_share(
    pg_db: Database,
) -> None:
    """An ack's transaction holds its platform's row FOR KEY SHARE until commit (its
    idempotency record's foreign key). Appending to that platform's feed must not wait for
    it: a FOR UPDATE lock on the feed head did, and stalled a reissue behind its acks."""
    carrier, plats, made = _load(pg_db)
    stored = pg_db.transact(lambda s: bindings.live_for_tokens(s, [t for _, _, t in made]))
    every = [b for bs in stored.values() for b in bs]
    with pg_db.write_engine.connect() as holder:
        holder.execute(
            text("SELECT pk FROM principals WHERE pk = ANY(:pks) FOR KEY SHARE"),
            {"pks": plats},
        )

        def append(s: Session) -> set[int]:
            s.execute(text("SET LOCAL lock_timeout = '2s'"))
            rid = orders.new_revocation(s, EventCause.REISSUED, carrier)
            new = [orders.NewOrder(b, EventKind.REVOKE, EventCause.REISSUED, 1) for b in every]
            return orders.append(s, rid, new, 60.0)

        assert pg_db.transact(append) == set(plats)
        holder.rollback()
    assert pg_db.transact(lambda s: feed.feed_head(s, plats[0])) == MANY // PLATFORMS


def test_feed_heads_are_locked_in_pk_order_whatever_order_they_are_asked_in(
    pg_db: Database,
) -> None:
    """Every appender locks its platforms' rows lowest pk first, so two appenders with
    overlapping platforms wait for each other instead of deadlocking. Shown directly: with
    the highest platform's row held elsewhere, an append asked for the platforms highest
    first already holds the lower ones while it waits (a lock taken in the order asked would
    wait on the highest holding none)."""
    _, plats, _ = _load(pg_db)
    high = max(plats)
    engine = pg_db.write_engine
    result: dict[str, Any] = {}
    with engine.connect() as holder, engine.connect() as appender, engine.connect() as prober:
        holder.execute(text("SELECT pk FROM principals WHERE pk = :p FOR UPDATE"), {"p": high})
        pid = appender.execute(text("SELECT pg_backend_pid()")).scalar_one()
        asked = {p: 1 for p in sorted(plats, reverse=True)}

        def bump() -> None:
            try:
                appender.execute(text("SET LOCAL lock_timeout = '20s'"))
                result["heads"] = pgsets.bump_feed_heads(appender, asked)
            except Exception as exc:  # reported below, in the test's thread
                result["error"] = exc

        thread = threading.Thread(target=bump)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                waiting = prober.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar()
                prober.rollback()
                if waiting == "Lock":
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the append never waited for the held row")
            for pk in plats:
                if pk == high:
                    continue
                with pytest.raises(OperationalError, match="could not obtain lock"):
                    prober.execute(
                        text("SELECT pk FROM principals WHERE pk = :p FOR UPDATE NOWAIT"),
                        {"p": pk},
                    )
                prober.rollback()
        finally:
            holder.rollback()
            thread.join(timeout=30)
        assert "error" not in result, result
        assert set(result["heads"]) == set(plats)
        appender.rollback()
