"""The store re-key racing requests on the same rows, on every backend: resolved by row locks
(PostgreSQL READ COMMITTED: the re-key's WHERE re-checked on the row as committed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from numbind.protocol import rekey as rekey_algebra
from numbind.protocol.digest import binding_digest, bucket16
from numbind.registry.domain.keymap import StoreToken
from numbind.registry.domain.lifecycle import NumberRecord
from numbind.registry.domain.types import (
    Binding,
    BindingKind,
    BindingState,
    NumberState,
    Token,
    now_us,
)
from numbind.registry.services.rekey import convert
from numbind.registry.storage import bindings, numbers, reconcile
from numbind.registry.storage import rekey as store
from numbind.registry.storage.models import BindingRow, NumberRow
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tests.storage._rekey import NEW, OLD, T0, Store


@pytest.fixture
def st(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.db.close()


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


def _until_waiting(st: Store, t: threading.Thread) -> None:
    """Until `t`'s transaction waits for a lock: on PostgreSQL a lock not granted in
    pg_locks to a backend of this test's database (pg_locks spans the cluster, where the
    other xdist worker's tests run; a row-lock wait is on a transaction id, which names no
    database); SQLite's writer waits for the one write lock, seen only as the thread still
    running a moment later."""
    if st.db.write_engine.dialect.name != "postgresql":
        t.join(0.5)
        return
    waiting_here = text(
        "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database()"
    )
    for _ in range(200):
        waiting = st.db.transact(lambda s: s.scalar(waiting_here), write=False)
        if waiting:
            return
        t.join(0.05)
    raise AssertionError("the report never waited for the re-key's row lock")


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
    # The report's locking read must be waiting on the row before the re-key commits (the
    # order this test is about); released earlier, the report would simply read the
    # committed row.
    _until_waiting(st, t)
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
