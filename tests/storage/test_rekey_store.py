"""The store re-key on every backend: every token-keyed row converted exactly once, resumable,
one runner per store, orders and feed entries moved with their binding."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import pytest
from numbind.protocol import rekey as rekey_algebra
from numbind.protocol.digest import binding_digest, bucket16
from numbind.registry.domain.keymap import RekeyState, RekeyStatus
from numbind.registry.domain.types import EventCause, EventKind, now_us
from numbind.registry.services.rekey import RekeyRunner, RekeySettings, convert
from numbind.registry.services.tokenmap import TokenMapper
from numbind.registry.storage import bindings, feed, keymap, orders
from numbind.registry.storage import rekey as store
from numbind.registry.storage.models import BindingRow, OrderRow, RekeyRow
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.storage._rekey import NEW, OLD, T0, Store

T = TypeVar("T")


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


async def test_orders_move_with_their_binding(st: Store) -> None:
    """An order carries its binding's token (the partition key): the re-key that converts
    the binding moves it too, and the feed still reads the event with its binding."""
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
            [bytes(t) for t in s.scalars(select(BindingRow.token))],
            [bytes(t) for t in s.scalars(select(OrderRow.token))],
        )

    assert st.db.transact(tokens, write=False) == ([converted], [converted])
    [item] = st.db.transact(
        lambda s: feed.read_feed(s, st.platform, after_seq=0, limit=10), write=False
    )
    assert (item.key_id, item.token) == (NEW, converted)


class _DeadWorkers(Executor):
    """A pool whose workers keep dying: every call fails as a broken process pool does."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.calls += 1
        raise BrokenProcessPool("a child process terminated abruptly")


async def test_a_runner_that_cannot_convert_gives_its_lease_back(st: Store) -> None:
    """Its runner used to take its own lease back after each failure, renewing it for as
    long as the process ran, so the re-key stood still and no other process took it over."""
    originals = st.fill(10)
    st.rotate()
    dead = _DeadWorkers()
    stuck = RekeyRunner(
        st.db,
        TokenMapper(st.db),
        dead,
        RekeySettings(batch_rows=4, pause_seconds=0.0, lease_seconds=60.0),
    )

    def owner() -> str | None:
        return st.db.transact(lambda s: s.scalars(select(RekeyRow.lease_owner)).one(), write=False)

    stuck.start()
    try:
        await _poll(lambda: dead.calls >= 2)
        await _poll(lambda: owner() is None, within=10.0)  # before: stuck.owner, renewed
        # A process whose workers run takes the job over well inside the 60 s lease.
        await _until_done(st, st.runner())
    finally:
        await stuck.close()
    _assert_all_rekeyed(st, originals)
