"""The store re-key on every backend: every token-keyed row converted exactly once, resumable,
one runner per store, and races with requests on the same rows resolved (PostgreSQL READ
COMMITTED: row locks, and the re-key's WHERE re-checked on the row as committed)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from numbind.protocol import rekey as rekey_algebra
from numbind.protocol import voprf
from numbind.protocol.digest import binding_digest, bucket16
from numbind.registry.domain.keymap import RekeyState, RekeyStatus, StoreToken
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    EventCause,
    EventKind,
    NumberState,
    Token,
    now_us,
)
from numbind.registry.services.rekey import RekeyRunner, RekeySettings, convert
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import (
    bindings,
    feed,
    keymap,
    migrate,
    numbers,
    orders,
    principals,
    reconcile,
)
from numbind.registry.storage import rekey as store
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import (
    BindingRow,
    FeedEventRow,
    LifecycleEventRow,
    NumberRow,
    OrderRow,
    RevocationRow,
    TokenKeyRow,
)
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from tests.tokens import random_token

OLD, NEW = "0000000000000001", "0000000000000002"
T0 = 1_700_000_000_000_000


class Store:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        migrate.upgrade(self.db.write_engine)
        self.k_old = voprf.generate_key_pair()[0]
        self.k_new = voprf.generate_key_pair()[0]
        self.delta = rekey_algebra.rekey_delta(self.k_old, self.k_new)
        self.carrier = self.db.transact(lambda s: principals.register(s, "carrier", "cm").pk)
        self.platform = self.db.transact(lambda s: principals.register(s, "platform", "p").pk)
        self.db.transact(self._keys)

    def _keys(self, s: Session) -> None:
        for key_id, state in ((OLD, 1),):
            s.add(TokenKeyRow(key_id=key_id, public_key=bytes(32), state=state, created_us=T0))
        keymap.ensure_store_key(s, OLD)

    def rotate(self) -> None:
        def act(s: Session) -> None:
            keymap.require_no_rekey(s)
            s.add(TokenKeyRow(key_id=NEW, public_key=bytes(32), state=1, created_us=T0 + 1))
            keymap.begin_rekey(s, OLD, NEW, self.delta, now_us())

        self.db.transact(act)

    def fill(self, n: int) -> list[bytes]:
        """n numbers, n bindings, n lifecycle events and n revocations under the old key."""
        tokens = [random_token() for _ in range(n)]

        def act(s: Session) -> None:
            s.execute(
                insert(NumberRow),
                [
                    dict(
                        token=t,
                        key_id=OLD,
                        carrier_pk=self.carrier,
                        state=1,
                        first_known_us=T0,
                        last_effective_us=T0,
                        updated_us=T0,
                    )
                    for t in tokens
                ],
            )
            s.execute(
                insert(BindingRow),
                [
                    dict(
                        platform_pk=self.platform,
                        key_id=OLD,
                        token=t,
                        account_ref=b"ref%d" % i,
                        bound_us=T0 - i,
                        kind=1,
                        state=1,
                        bucket=bucket16(t),
                        digest=binding_digest(OLD, t, b"ref%d" % i, T0 - i, 1),
                        updated_us=T0,
                    )
                    for i, t in enumerate(tokens)
                ],
            )
            s.execute(
                insert(LifecycleEventRow),
                [
                    dict(
                        token=t,
                        key_id=OLD,
                        carrier_pk=self.carrier,
                        kind=1,
                        effective_us=T0,
                        recorded_us=T0,
                        applied=True,
                    )
                    for t in tokens
                ],
            )
            s.execute(
                insert(RevocationRow),
                [
                    dict(
                        id=str(uuid.uuid4()),
                        cause=2,
                        carrier_pk=self.carrier,
                        token=t,
                        key_id=OLD,
                        scope=1,
                        created_us=T0,
                    )
                    for t in tokens
                ],
            )

        self.db.transact(act)
        return tokens

    def rows(self) -> dict[str, list[tuple[str, bytes]]]:
        def read(s: Session) -> dict[str, list[tuple[str, bytes]]]:
            return {
                m.__tablename__: [(k, t) for k, t in s.execute(select(m.key_id, m.token))]
                for m in (NumberRow, BindingRow, LifecycleEventRow, RevocationRow)
            }

        return self.db.transact(read, write=False)

    def runner(self, pause: float = 0.0, batch: int = 7) -> RekeyRunner:
        return RekeyRunner(
            self.db,
            TokenMapper(self.db),
            ThreadPoolExecutor(2),
            RekeySettings(batch_rows=batch, pause_seconds=pause, lease_seconds=5.0),
        )


@pytest.fixture
def st(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.db.close()


async def _poll(done: Callable[[], bool], within: float = 60.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if done():
                return
            await asyncio.sleep(0.01)


def _status(st: Store) -> RekeyStatus:
    status = st.db.transact(keymap.latest_rekey, write=False)
    assert status is not None
    return status


async def _until_done(st: Store, runner: RekeyRunner) -> None:
    runner.start()
    try:
        await _poll(lambda: not _status(st).running)
    finally:
        await runner.close()


def _assert_all_rekeyed(st: Store, originals: list[bytes]) -> None:
    want = sorted(rekey_algebra.rekey(st.delta, t) for t in originals)
    for table, rows in st.rows().items():
        assert {k for k, _ in rows} == {NEW}, table
        # Each exactly once: a row converted twice would hold Delta^2 * T.
        assert sorted(t for _, t in rows) == want, table
    for b in st.db.transact(lambda s: list(s.scalars(select(BindingRow))), write=False):
        assert b.bucket == bucket16(b.token)
        assert b.digest == binding_digest(NEW, b.token, b.account_ref, b.bound_us, b.kind)


async def test_rekey_converts_every_table_exactly_once(st: Store) -> None:
    originals = st.fill(40)
    st.rotate()
    view = st.db.transact(keymap.load_view, write=False)
    assert view.store_key_id == NEW and view.rekeying and view.back is not None
    await _until_done(st, st.runner())
    _assert_all_rekeyed(st, originals)
    status = st.db.transact(keymap.latest_rekey, write=False)
    assert status is not None and status.state == RekeyState.DONE
    assert status.rows_done == status.rows_total == 160
    assert not st.db.transact(keymap.load_view, write=False).rekeying


async def test_rekey_resumes_where_it_stopped(st: Store) -> None:
    originals = st.fill(30)
    st.rotate()
    first = st.runner(pause=0.05, batch=4)
    first.start()
    await _poll(lambda: _status(st).rows_done >= 40)
    await first.close()  # stops between batches and hands the lease back
    part = st.rows()
    converted = sum(k == NEW for rows in part.values() for k, _ in rows)
    assert 0 < converted < 120
    job = st.db.transact(store.running_job, write=False)
    assert job is not None and (job.table_no, job.cursor) != (0, None)
    await _until_done(st, st.runner())
    _assert_all_rekeyed(st, originals)


def test_one_lease_at_a_time(st: Store) -> None:
    st.fill(3)
    st.rotate()
    job = st.db.transact(store.running_job, write=False)
    assert job is not None
    now = now_us()
    assert st.db.transact(lambda s: store.acquire(s, job.id, "a", now, now + 10**6))
    assert not st.db.transact(lambda s: store.acquire(s, job.id, "b", now, now + 10**6))
    later = now + 2 * 10**6  # a's lease expired: b takes over
    assert st.db.transact(lambda s: store.acquire(s, job.id, "b", later, later + 10**6))
    rows = convert(
        0,
        job.delta,
        NEW,
        st.db.transact(lambda s: store.read_batch(s, store.TABLES[0], OLD, None, 10), write=False),
    )
    with pytest.raises(store.LeaseLost):
        st.db.transact(
            lambda s: store.write_batch(
                s, job.id, "a", 0, rows, rows[-1][0], OLD, NEW, later, later + 1
            )
        )
    assert {k for k, _ in st.rows()["numbers"]} == {OLD}  # a's batch wrote nothing


def test_a_second_rotation_is_refused_while_the_first_runs(st: Store) -> None:
    st.fill(2)
    st.rotate()
    with pytest.raises(Exception, match=r"re-key from 0000000000000001 to 0000000000000002"):
        st.db.transact(keymap.require_no_rekey)


def _record(st: Store) -> NumberRecord:
    return NumberRecord(st.carrier, NumberState.DEACTIVATED, T0, T0, T0, T0 + 1)


def _in_thread(fn: object) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


def test_report_holding_the_row_wins_and_the_rekey_batch_skips_it(st: Store) -> None:
    """A report locked the number (old form) and converts it; the re-key batch for the same
    row runs meanwhile. On PostgreSQL the batch's UPDATE waits for the lock, then re-checks
    `key_id = old` on the committed row and skips it: converted once, the report's state
    kept. (On SQLite writers take turns, and the outcome must be the same.)"""
    (token,) = st.fill(1)
    st.rotate()
    job = st.db.transact(store.running_job, write=False)
    assert job is not None
    now = now_us()
    st.db.transact(lambda s: store.acquire(s, job.id, "runner", now, now + 60 * 10**6))
    batch = convert(0, st.delta, NEW, [(token, token)])
    mapped = StoreToken(rekey_algebra.rekey(st.delta, token), token)
    locked, release = threading.Event(), threading.Event()

    def report() -> None:
        with st.db.session() as s:
            stored = numbers.load_stored(s, [mapped], lock=True)
            assert stored[mapped.value][0] == token  # found in the old form
            locked.set()
            release.wait(10)
            numbers.save(s, {mapped.value: _record(st)}, {mapped.value: token}, NEW)

    t, errors = _in_thread(report)
    assert locked.wait(10)
    r, rekey_errors = _in_thread(
        lambda: st.db.transact(
            lambda s: store.write_batch(
                s, job.id, "runner", 0, batch, token, OLD, NEW, now, now + 10**8
            )
        )
    )
    release.set()
    t.join(20)
    r.join(20)
    assert not errors and not rekey_errors
    rows = st.db.transact(lambda s: list(s.scalars(select(NumberRow))), write=False)
    assert [(n.key_id, n.token, n.state) for n in rows] == [
        (NEW, mapped.value, int(NumberState.DEACTIVATED))
    ]


def test_rekey_holding_the_row_first_then_the_report_finds_the_new_form(st: Store) -> None:
    """The reverse order: the re-key converted the row and has not committed; the report's
    locking read waits, then (PostgreSQL re-evaluates its WHERE on the new row version,
    which matches the new form) finds the row converted, and updates it. One row."""
    (token,) = st.fill(1)
    st.rotate()
    job = st.db.transact(store.running_job, write=False)
    assert job is not None
    now = now_us()
    st.db.transact(lambda s: store.acquire(s, job.id, "runner", now, now + 60 * 10**6))
    batch = convert(0, st.delta, NEW, [(token, token)])
    mapped = StoreToken(rekey_algebra.rekey(st.delta, token), token)
    written, release = threading.Event(), threading.Event()

    def rekey_batch() -> None:
        with st.db.session() as s:
            store.write_batch(s, job.id, "runner", 0, batch, token, OLD, NEW, now, now + 10**8)
            written.set()
            release.wait(10)

    r, rekey_errors = _in_thread(rekey_batch)
    assert written.wait(10)
    seen: list[bytes] = []

    def report() -> None:
        def act(s: Session) -> None:
            stored = numbers.load_stored(s, [mapped], lock=True)
            seen.append(stored[mapped.value][0])
            numbers.save(
                s, {mapped.value: _record(st)}, {mapped.value: stored[mapped.value][0]}, NEW
            )

        st.db.transact(act)

    t, errors = _in_thread(report)
    release.set()
    r.join(20)
    t.join(20)
    assert not errors and not rekey_errors
    assert seen[-1] == mapped.value
    rows = st.db.transact(lambda s: list(s.scalars(select(NumberRow))), write=False)
    assert [(n.key_id, n.token, n.state) for n in rows] == [
        (NEW, mapped.value, int(NumberState.DEACTIVATED))
    ]


def test_publish_converting_a_row_the_rekey_batch_holds(st: Store) -> None:
    """A publish read the binding in the old form (no lock) while an uncommitted re-key
    batch converted it; the publish's UPDATE by pk waits for it and then writes the new
    form with the publish's values: one row, the platform's bound_at, the right digest."""
    (token,) = st.fill(1)
    st.rotate()
    job = st.db.transact(store.running_job, write=False)
    assert job is not None
    now = now_us()
    st.db.transact(lambda s: store.acquire(s, job.id, "runner", now, now + 60 * 10**6))
    rows = st.db.transact(
        lambda s: store.read_batch(s, store.TABLES[1], OLD, None, 10), write=False
    )
    batch = convert(1, st.delta, NEW, rows)
    mapped = StoreToken(rekey_algebra.rekey(st.delta, token), token)
    later = Binding(Token(NEW, mapped.value), b"ref0", T0 + 5, BindingKind.PAYMENT)
    prepared = bindings.prepare(st.platform, [later], now, {mapped.value: token})
    written, release = threading.Event(), threading.Event()

    def rekey_batch() -> None:
        with st.db.session() as s:
            store.write_batch(
                s, job.id, "runner", 1, batch, rows[-1][0], OLD, NEW, now, now + 10**8
            )
            written.set()
            release.wait(10)

    r, rekey_errors = _in_thread(rekey_batch)
    assert written.wait(10)
    counts: list[object] = []
    t, errors = _in_thread(
        lambda: counts.append(st.db.transact(lambda s: bindings.upsert(s, prepared)))
    )
    release.set()
    r.join(20)
    t.join(20)
    assert not errors and not rekey_errors
    [row] = st.db.transact(lambda s: list(s.scalars(select(BindingRow))), write=False)
    assert (row.key_id, row.token, row.bound_us, row.kind) == (NEW, mapped.value, T0 + 5, 3)
    assert row.digest == binding_digest(NEW, mapped.value, b"ref0", T0 + 5, 3)
    assert row.bucket == bucket16(mapped.value)


def test_a_stale_rekey_batch_never_overwrites_a_conversion(st: Store) -> None:
    """The re-key read a binding in the old form; before its batch commits, a publish
    converts the row with a new bound_at. The batch's UPDATE must skip the row (key_id is
    no longer the old key): otherwise its digest, computed from the stale bound_at, would
    overwrite the publish's and reconciliation would see a change nobody made."""
    (token,) = st.fill(1)
    st.rotate()
    job = st.db.transact(store.running_job, write=False)
    assert job is not None
    now = now_us()
    st.db.transact(lambda s: store.acquire(s, job.id, "runner", now, now + 60 * 10**6))
    stale = convert(
        1,
        st.delta,
        NEW,
        st.db.transact(lambda s: store.read_batch(s, store.TABLES[1], OLD, None, 10), write=False),
    )
    mapped = StoreToken(rekey_algebra.rekey(st.delta, token), token)
    later = Binding(Token(NEW, mapped.value), b"ref0", T0 + 5, BindingKind.PAYMENT)
    prepared = bindings.prepare(st.platform, [later], now, {mapped.value: token})
    st.db.transact(lambda s: bindings.upsert(s, prepared))
    st.db.transact(
        lambda s: store.write_batch(s, job.id, "runner", 1, stale, 1, OLD, NEW, now, now + 10**8)
    )
    [row] = st.db.transact(lambda s: list(s.scalars(select(BindingRow))), write=False)
    assert (row.key_id, row.token, row.bound_us) == (NEW, mapped.value, T0 + 5)
    assert row.digest == binding_digest(NEW, mapped.value, b"ref0", T0 + 5, 3)


def test_a_stale_republish_of_a_revoked_row_in_the_old_form_stays_revoked(st: Store) -> None:
    """A nightly export republishes bindings the platform acked UNBOUND before the re-key
    reached them: found in the old form, they are converted, and a bound_at no later than
    the revocation leaves them revoked (counted as such) with their revocation time kept,
    which is what a later bound_at is compared with; one after it binds the number anew."""
    tokens = st.fill(3)
    revoked_at = T0 + 1_000
    st.db.transact(
        lambda s: s.execute(
            update(BindingRow).values(state=int(BindingState.REVOKED), updated_us=revoked_at)
        )
    )
    st.rotate()
    mapped = [StoreToken(rekey_algebra.rekey(st.delta, t), t) for t in tokens]
    bound = [T0, revoked_at - 1, revoked_at + 1]  # as it was; before; after the revocation
    batch = bindings.prepare(
        st.platform,
        [
            Binding(Token(NEW, m.value), b"ref%d" % i, us, BindingKind.LOGIN)
            for i, (m, us) in enumerate(zip(mapped, bound, strict=True))
        ],
        now_us(),
        {m.value: t for m, t in zip(mapped, tokens, strict=True)},
    )
    counts = st.db.transact(lambda s: bindings.upsert(s, batch))
    assert (counts.inserted, counts.updated, counts.unchanged, counts.revoked) == (0, 1, 0, 2)
    rows = {
        r.account_ref: r
        for r in st.db.transact(lambda s: list(s.scalars(select(BindingRow))), write=False)
    }
    assert len(rows) == 3
    for i, m in enumerate(mapped):
        row = rows[b"ref%d" % i]
        assert (row.key_id, row.token, row.bucket) == (NEW, m.value, bucket16(m.value))
        assert row.digest == binding_digest(NEW, m.value, row.account_ref, row.bound_us, 1)
    for i in (0, 1):
        row = rows[b"ref%d" % i]
        assert (row.state, row.bound_us, row.updated_us) == (
            int(BindingState.REVOKED),
            T0 - i,
            revoked_at,
        )
    assert (rows[b"ref2"].state, rows[b"ref2"].bound_us) == (int(BindingState.ACTIVE), bound[2])
    listed = st.db.transact(
        lambda s: reconcile.list_revoked_page(s, st.platform, 0, 0xFFFF, NEW, None, 10),
        write=False,
    )
    assert sorted((b.token.value, us) for _, _, b, us in listed) == sorted(
        (m.value, revoked_at) for m in mapped[:2]
    )
    assert st.db.transact(lambda s: reconcile.revoked_count(s, st.platform, NEW), write=False) == 2


async def test_two_runners_on_one_store_one_does_the_work(
    st: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several registry processes may share a store; the lease lets one runner at a time
    write batches, and the other stands by."""
    originals = st.fill(30)
    st.rotate()
    owners: set[str] = set()
    write = store.write_batch

    def spy(session: Session, job_id: int, owner: str, *args: object, **kw: object) -> None:
        owners.add(owner)
        write(session, job_id, owner, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write_batch", spy)
    a, b = st.runner(batch=3), st.runner(batch=3)
    b.start()
    try:
        await _until_done(st, a)
    finally:
        await b.close()
    assert len(owners) == 1
    _assert_all_rekeyed(st, originals)


async def test_orders_and_feed_entries_move_with_their_binding(st: Store) -> None:
    """An order and its feed entry carry their binding's token (the partition key): the
    re-key that converts the binding moves them too, and the feed still reads the event
    with its binding."""
    (token,) = st.fill(1)

    def order(s: Session) -> None:
        [stored] = bindings.bindings_for_token(s, token)
        rid = orders.new_revocation(s, EventCause.REISSUED, st.carrier)
        new = orders.NewOrder(stored, EventKind.REVOKE, EventCause.REISSUED, T0)
        orders.append(s, rid, [new], 3600)

    st.db.transact(order)
    st.rotate()
    await _until_done(st, st.runner())
    converted = rekey_algebra.rekey(st.delta, token)

    def tokens(s: Session) -> tuple[list[bytes], list[bytes]]:
        return (
            [bytes(t) for t in s.scalars(select(OrderRow.token))],
            [bytes(t) for t in s.scalars(select(FeedEventRow.token))],
        )

    assert st.db.transact(tokens, write=False) == ([converted], [converted])
    [item] = st.db.transact(
        lambda s: feed.read_feed(s, st.platform, after_seq=0, limit=10), write=False
    )
    assert (item.key_id, item.token) == (NEW, converted)
