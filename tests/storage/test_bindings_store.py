"""The bindings store's contract, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import pytest
from numbind.protocol.digest import (
    EMPTY_DIGEST,
    binding_digest,
    bucket16_range,
    bucket_of,
    xor,
)
from numbind.registry.domain.bindings import BindingKey, PageCursor, PublishCounts, WithdrawCounts
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.types import Binding, BindingKind, BindingState, Token
from numbind.registry.storage import bindings as store
from numbind.registry.storage import migrate, principals, reconcile
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import BindingRow
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from tests.tokens import token_in_bucket

T = TypeVar("T")
KEY = "0123456789abcdef"
OTHER_KEY = "fedcba9876543210"
T0 = 1_700_000_000_000_000


class Store:
    """A migrated database with two platforms, and shorthands for one-call transactions."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        migrate.upgrade(self.db.write_engine)
        self.acme = self.run(lambda s: principals.register(s, "platform", "acme").pk)
        self.bank = self.run(lambda s: principals.register(s, "platform", "bank").pk)

    def run(self, fn: Callable[[Session], T]) -> T:
        return self.db.transact(fn)

    def publish(self, platform: int, bindings: list[Binding], now: int = T0) -> PublishCounts:
        batch = store.prepare(platform, bindings, now)
        return self.run(lambda s: store.upsert(s, batch))

    def withdraw(self, platform: int, keys: list[BindingKey]) -> WithdrawCounts:
        mapped = [(StoreToken(k.token.value), k.account_ref) for k in keys]
        return self.run(lambda s: store.withdraw(s, platform, mapped, T0))

    def digests(self, platform: int, bits: int, key_id: str = "") -> dict[int, tuple[int, bytes]]:
        out = self.run(lambda s: reconcile.digests(s, platform, bits, key_id))
        assert [d.bucket for d in out] == sorted({d.bucket for d in out})
        return {d.bucket: (d.count, d.digest) for d in out}

    def set_state(self, binding: Binding, state: BindingState, at_us: int | None = None) -> None:
        values: dict[str, int] = {"state": int(state)}
        if at_us is not None:
            values["updated_us"] = at_us
        self.run(
            lambda s: s.execute(
                update(BindingRow).where(BindingRow.token == binding.token.value).values(**values)
            )
        )


# PostgreSQL-only behaviour: only the postgresql store (SQLite keeps its lookup).
PG_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def st(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.db.close()


def binding(
    token: bytes | None = None,
    ref: bytes = b"acct-1",
    bound_us: int = T0 - 10**9,
    kind: BindingKind = BindingKind.LOGIN,
    key_id: str = KEY,
) -> Binding:
    return Binding(Token(key_id, token or os.urandom(32)), ref, bound_us, kind)


def key(b: Binding) -> BindingKey:
    return BindingKey(b.token, b.account_ref)


def expected_digests(bindings: list[Binding], bits: int) -> dict[int, tuple[int, bytes]]:
    """What a platform computes on its side, with the shared digest module."""
    out: dict[int, tuple[int, bytes]] = {}
    for b in bindings:
        bucket = bucket_of(b.token.value, bits)
        count, acc = out.get(bucket, (0, EMPTY_DIGEST))
        d = binding_digest(b.token.key_id, b.token.value, b.account_ref, b.bound_us, b.kind)
        out[bucket] = (count + 1, xor(acc, d))
    return out


def test_upsert_counts_inserted_updated_unchanged(st: Store) -> None:
    a, b, c = binding(), binding(), binding()
    assert st.publish(st.acme, [a, b, c]) == PublishCounts(3, 0, 0)
    assert st.publish(st.acme, [a, b, c]) == PublishCounts(0, 0, 3)
    moved = Binding(a.token, a.account_ref, a.bound_us + 1, a.kind)
    rekinded = Binding(b.token, b.account_ref, b.bound_us, BindingKind.PAYMENT)
    d = binding()
    assert st.publish(st.acme, [moved, rekinded, c, d]) == PublishCounts(1, 2, 1)
    assert st.digests(st.acme, 0) == expected_digests([moved, rekinded, c, d], 0)


def test_same_token_with_another_account_ref_is_another_binding(st: Store) -> None:
    a = binding(ref=b"one")
    b = Binding(a.token, b"two", a.bound_us, a.kind)
    assert st.publish(st.acme, [a]) == PublishCounts(1, 0, 0)
    assert st.publish(st.acme, [b, a]) == PublishCounts(1, 0, 1)
    assert st.digests(st.acme, 16) == expected_digests([a, b], 16)


def test_withdrawn_binding_published_again_is_active_and_updated(st: Store) -> None:
    a, b, c = binding(), binding(), binding()
    st.publish(st.acme, [a, b, c])
    assert st.withdraw(st.acme, [key(a)]) == WithdrawCounts(1, 0)
    assert st.withdraw(st.acme, [key(a), key(b)]) == WithdrawCounts(1, 1)
    assert st.digests(st.acme, 0) == expected_digests([c], 0)
    assert st.publish(st.acme, [a, b, c]) == PublishCounts(0, 2, 1)
    assert st.digests(st.acme, 0) == expected_digests([a, b, c], 0)
    assert {sb.state for t in (a, b, c) for sb in st.run(_for_token(t))} == {BindingState.ACTIVE}


def test_revoked_binding_returns_only_when_bound_after_the_revocation(st: Store) -> None:
    a = binding()
    st.publish(st.acme, [a])
    revoked_us = T0 + 10**8
    st.set_state(a, BindingState.REVOKED, revoked_us)
    # A stale snapshot row (bound_at no later than the revocation) cannot undo a holder's
    # revocation; it is counted apart so the platform hears about it.
    assert st.publish(st.acme, [a]) == PublishCounts(0, 0, 0, 1)
    older = Binding(a.token, a.account_ref, a.bound_us - 5, a.kind)
    assert st.publish(st.acme, [older]) == PublishCounts(0, 0, 0, 1)
    before = Binding(a.token, a.account_ref, revoked_us, a.kind)
    assert st.publish(st.acme, [before]) == PublishCounts(0, 0, 0, 1)
    assert st.digests(st.acme, 0) == {}
    listed = st.run(lambda s: reconcile.list_revoked_page(s, st.acme, 0, 0xFFFF, "", None, 10))
    assert [(b, us) for _, _, b, us in listed] == [(a, revoked_us)]
    assert st.run(lambda s: reconcile.revoked_count(s, st.acme, "")) == 1
    assert st.run(lambda s: reconcile.revoked_count(s, st.acme, OTHER_KEY)) == 0
    assert st.run(lambda s: reconcile.revoked_count(s, st.bank, "")) == 0
    later = Binding(a.token, a.account_ref, revoked_us + 1, a.kind)
    assert st.publish(st.acme, [later]) == PublishCounts(0, 1, 0)
    assert st.digests(st.acme, 0) == expected_digests([later], 0)
    assert st.run(lambda s: reconcile.revoked_count(s, st.acme, "")) == 0


def test_revoking_binding_stays_revoking_and_live(st: Store) -> None:
    a = binding()
    st.publish(st.acme, [a])
    st.set_state(a, BindingState.REVOKING)
    assert st.publish(st.acme, [a]) == PublishCounts(0, 0, 1)
    later = Binding(a.token, a.account_ref, a.bound_us + 5, a.kind)
    assert st.publish(st.acme, [later]) == PublishCounts(0, 1, 0)
    [found] = st.run(_for_token(a))
    assert (found.state, found.binding) == (BindingState.REVOKING, later)
    assert st.digests(st.acme, 4) == expected_digests([later], 4)


def test_upsert_converts_a_row_found_in_the_old_form_in_place(st: Store) -> None:
    """During a re-key a row may still be in the old key's form: publishing its binding
    (mapped to the store key) converts that row, never adds a second one."""
    old_form = binding(key_id=OTHER_KEY)
    new_value = os.urandom(32)
    same = Binding(Token(KEY, new_value), old_form.account_ref, old_form.bound_us, old_form.kind)
    st.publish(st.acme, [old_form])
    batch = store.prepare(st.acme, [same], T0, {new_value: old_form.token.value})
    # Only the form changed, which is no change the platform made.
    assert st.run(lambda s: store.upsert(s, batch)) == PublishCounts(0, 0, 1)
    assert st.digests(st.acme, 0, OTHER_KEY) == {}
    assert st.digests(st.acme, 0, KEY) == expected_digests([same], 0)
    assert st.digests(st.acme, 0) == expected_digests([same], 0)
    # The row is found under either form afterwards, and is one row.
    forms = StoreToken(new_value, old_form.token.value)
    [found] = st.run(lambda s: store.bindings_for_token(s, forms))
    assert found.binding == same
    later = Binding(same.token, same.account_ref, same.bound_us + 1, same.kind)
    assert st.publish(st.acme, [later]) == PublishCounts(0, 1, 0)


def test_old_form_rows_are_found_and_withdrawn_by_their_new_form(st: Store) -> None:
    old_form = binding(key_id=OTHER_KEY)
    st.publish(st.acme, [old_form])
    forms = StoreToken(os.urandom(32), old_form.token.value)
    [found] = st.run(lambda s: store.bindings_for_token(s, forms))
    assert found.binding == old_form  # kept in its stored form; the re-key converts it
    assert st.run(lambda s: store.live_for_tokens(s, [forms])).keys() == {forms.value}
    mapped = [(forms, old_form.account_ref)]
    assert st.run(lambda s: store.withdraw(s, st.acme, mapped, T0)) == WithdrawCounts(1, 0)
    assert st.digests(st.acme, 0) == {}


def _binding_reads(st: Store) -> list[str]:
    """Collects the statements that read bindings from now on (SQLAlchemy's own)."""
    seen: list[str] = []

    def before(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "bindings" in statement:
            seen.append(statement)

    event.listen(st.db.write_engine, "before_cursor_execute", before)
    return seen


@PG_ONLY
def test_postgres_inserts_a_batch_of_new_bindings_without_looking_them_up(st: Store) -> None:
    """The insert's own unique check tells new from stored; a second probe per row into
    the unique index (the existing-row lookup) cost half the publish path at 10 M rows."""
    old = binding()
    st.publish(st.acme, [old])
    reads = _binding_reads(st)
    assert st.publish(st.acme, [binding() for _ in range(50)]) == PublishCounts(50, 0, 0)
    assert reads == []
    # Another platform's row for the same token, or another account_ref, is no conflict.
    assert st.publish(st.bank, [old]) == PublishCounts(1, 0, 0)
    assert reads == []
    # A stored binding in the batch: the lookup path decides.
    assert st.publish(st.acme, [old, binding()]) == PublishCounts(1, 0, 1)
    assert len(reads) == 1


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@PG_ONLY
def test_postgres_lookup_is_planned_for_a_few_tokens_whatever_the_batch(st: Store) -> None:
    """The lookup must stay an index probe per token on a big table. Given the array, the
    planner sized the join by its length and, at 10 M rows, hashed 10,000 tokens against a
    scan of all the platform's rows (~250 us a token instead of ~6): the array is hidden
    from it, so the join is planned for a few tokens (PostgreSQL's default guess of 10)."""
    tokens = sorted(os.urandom(32) for _ in range(2_000))
    sql = "EXPLAIN (FORMAT JSON) " + store._PG_LOOKUP.format(cols="b.pk, b.state")

    def plan(s: Session) -> Any:
        return s.connection().exec_driver_sql(sql, (tokens, st.acme)).scalar_one()

    [top] = st.run(plan)
    [unnest] = [n for n in _nodes(top["Plan"]) if n.get("Function Name") == "unnest"]
    assert unnest["Plan Rows"] <= 100, unnest


def test_a_stored_binding_after_new_ones_in_a_batch_adds_each_new_one_once(st: Store) -> None:
    """Rows are written in token order: the new ones ahead of the stored one are in the
    table before the conflict shows. They are counted and stored once, not twice."""
    stored = binding(b"\xff" * 32)
    st.publish(st.acme, [stored])
    new = [binding(bytes([i]) + os.urandom(31)) for i in range(20)]
    revised = Binding(stored.token, stored.account_ref, stored.bound_us + 1, stored.kind)
    assert st.publish(st.acme, [*new, revised]) == PublishCounts(20, 1, 0)
    assert st.digests(st.acme, 0) == expected_digests([*new, revised], 0)
    assert st.publish(st.acme, [*new, revised]) == PublishCounts(0, 0, 21)


def test_batches_spanning_several_statements(st: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # On SQLite: lookups of 96 tokens and inserts of 9 rows a statement, with remainders.
    monkeypatch.setattr(store, "_MAX_VARIABLES", 97)
    many = [binding() for _ in range(2_500)]
    assert st.publish(st.acme, many) == PublishCounts(2_500, 0, 0)
    changed = [Binding(b.token, b.account_ref, b.bound_us + 1, b.kind) for b in many[:700]]
    assert st.publish(st.acme, changed + many[700:]) == PublishCounts(0, 700, 1_800)
    assert st.withdraw(st.acme, [key(b) for b in many]) == WithdrawCounts(2_500, 0)


@pytest.mark.parametrize("bits", [0, 1, 4, 9, 16])
def test_digests_equal_the_platforms_own_computation(st: Store, bits: int) -> None:
    mine = [binding(kind=BindingKind(1 + i % 5)) for i in range(300)]
    old_key = [binding(key_id=OTHER_KEY) for _ in range(20)]
    st.publish(st.acme, mine + old_key)
    st.publish(st.bank, [binding() for _ in range(50)])
    assert st.digests(st.acme, bits) == expected_digests(mine + old_key, bits)
    assert st.digests(st.acme, bits, KEY) == expected_digests(mine, bits)
    assert st.digests(st.acme, bits, OTHER_KEY) == expected_digests(old_key, bits)


def test_platforms_never_see_or_touch_each_others_bindings(st: Store) -> None:
    a = binding()
    st.publish(st.acme, [a])
    assert st.digests(st.bank, 0) == {}
    assert st.withdraw(st.bank, [key(a)]) == WithdrawCounts(0, 1)
    # The same key published by another platform is that platform's own binding.
    assert st.publish(st.bank, [a]) == PublishCounts(1, 0, 0)
    assert st.withdraw(st.bank, [key(a)]) == WithdrawCounts(1, 0)
    assert st.digests(st.acme, 0) == expected_digests([a], 0)
    assert st.run(lambda s: reconcile.list_page(s, st.bank, 0, 0xFFFF, "", None, 10)) == []


@pytest.mark.parametrize("bits", [0, 3, 16])
def test_list_pages_cover_each_bucket_exactly_once(st: Store, bits: int) -> None:
    # Tokens crowded into few 16-bit buckets, so pages end inside a bucket too.
    mine = [binding(token_in_bucket((i % 4) << 8 | i % 3)) for i in range(120)]
    mine += [binding(key_id=OTHER_KEY) for _ in range(30)]
    st.publish(st.acme, mine)
    st.publish(st.bank, [binding(token_in_bucket(0)) for _ in range(40)])
    st.withdraw(st.acme, [key(mine[0])])
    live = mine[1:]
    # Every bucket at coarse widths; at 16 bits the occupied ones and an empty one.
    buckets = range(1 << bits) if bits < 16 else {bucket_of(b.token.value, 16) for b in mine}
    for key_id in ("", KEY):
        want = [b for b in live if not key_id or b.token.key_id == key_id]
        for bucket in [*buckets, 0xFFFF] if bits == 16 else buckets:
            lo, hi = bucket16_range(bucket, bits)
            seen = page_through(st, st.acme, lo, hi, key_id, 7)
            in_bucket = [b for b in want if bucket_of(b.token.value, bits) == bucket]
            assert sorted(seen, key=_order) == sorted(in_bucket, key=_order)
            assert len(seen) == len(in_bucket)


def page_through(
    st: Store, platform: int, lo: int, hi: int, key_id: str, size: int
) -> list[Binding]:
    seen: list[Binding] = []
    after: PageCursor | None = None
    while True:
        page = st.run(
            partial(
                reconcile.list_page,
                platform_pk=platform,
                lo=lo,
                hi=hi,
                key_id=key_id,
                after=after,
                limit=size,
            )
        )
        assert all(lo <= b16 <= hi for b16, _, _ in page)
        assert [(b16, pk) for b16, pk, _ in page] == sorted((b, p) for b, p, _ in page)
        seen += [b for _, _, b in page]
        if len(page) < size:
            return seen
        b16, pk, _ = page[-1]
        after = PageCursor(lo, hi, b16, pk)


def test_bindings_for_token_spans_platforms_and_skips_dead_ones(st: Store) -> None:
    a = binding(ref=b"a")
    also = Binding(a.token, b"b", a.bound_us, a.kind)
    st.publish(st.acme, [a, also])
    st.publish(st.bank, [a])
    st.withdraw(st.acme, [key(also)])
    found = st.run(_for_token(a))
    assert [(f.platform_pk, f.binding, f.state) for f in found] == [
        (st.acme, a, BindingState.ACTIVE),
        (st.bank, a, BindingState.ACTIVE),
    ]
    assert st.run(lambda s: store.bindings_for_token(s, os.urandom(32))) == []


def test_prepare_derives_bucket_and_digest(st: Store) -> None:
    a = binding(token_in_bucket(0xABCD), kind=BindingKind.RECOVERY)
    [row] = store.prepare(st.acme, [a], T0).rows
    assert row[7] == 0xABCD
    assert row[8] == binding_digest(KEY, a.token.value, a.account_ref, a.bound_us, 2)


def _for_token(b: Binding) -> Callable[[Session], list[store.StoredBinding]]:
    return lambda s: store.bindings_for_token(s, b.token.value)


def _order(b: Binding) -> tuple[bytes, bytes]:
    return b.token.value, b.account_ref
