"""Outages in a federation of three: a member down during a reissue catches up with every
order once; with the hub down, members keep serving their platforms. Afterwards, a scan
of every store: bindings never leave their member, and the hub holds none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.errors import FailedPrecondition
from numbind.registry.storage import log
from numbind.sdk import AckOutcome, EventKind, Lifecycle, LifecycleReport
from numbind.sdk.channel import secure_channel
from numbind.sdk.log import LogClient, LogProofError
from numbind.sdk.tokenizer import TokenResult
from numbind.v1 import platforms_pb2
from sqlalchemy import create_engine, text

from tests.e2e._fed_story import acked, add, caught_up, nothing_more, positions, reassigned, take
from tests.e2e._member_log import cosigned, take_proved
from tests.e2e._story import carrier, days_ago, publish, tokenize
from tests.e2e._three import Three, make_three, running
from tests.e2e.test_federation_replication import _net_database

PHONES = ["+8613800138000", "+8613800138001", "+8613800138002"]
YES, NO = platforms_pb2.REASSIGNED_ANSWER_REASSIGNED, platforms_pb2.REASSIGNED_ANSWER_NOT_REASSIGNED


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Three]:
    fed = make_three(tmp_path, net_database_url=_net_database())
    async with running(fed):
        yield fed


async def _setup(three: Three) -> tuple[dict[str, Bundle], list[TokenResult]]:
    bundles = {
        "cm": add(three, "hub", "carrier", "cm"),
        "loan": add(three, "bank", "platform", "loan"),
        "drive": add(three, "net", "platform", "drive"),
    }
    tokens = [await tokenize(bundles["loan"], p) for p in PHONES]
    for name in ("loan", "drive"):
        for i, token in enumerate(tokens):
            await publish(bundles[name], token, [(f"{name}-{i}".encode(), days_ago(400))])
    async with carrier(bundles["cm"]) as c:
        await c.report([LifecycleReport(p, Lifecycle.ISSUED, days_ago(500)) for p in PHONES])
    return bundles, tokens


async def test_a_member_down_during_a_reissue_gets_every_order_once(three: Three) -> None:
    bundles, _ = await _setup(three)
    await acked(three, "net", await caught_up(three, "net"))
    await three.stop("net")
    async with carrier(bundles["cm"]) as c:
        s = await c.report([LifecycleReport(p, Lifecycle.REISSUED, days_ago(10)) for p in PHONES])
        assert s.applied == len(PHONES)
    # bank, up all along, has its orders at once; net has none while down.
    loan_orders = await take(bundles["loan"], three.root / "c-loan", 3, AckOutcome.UNBOUND)
    assert sorted(o.account_ref for o in loan_orders) == [b"loan-0", b"loan-1", b"loan-2"]
    # The hub's `federation show` has net behind (its last ack) and bank caught up.
    hub_view = positions(three, "hub")
    assert hub_view["net"]["position"] == hub_view["hub"]["position"] - len(PHONES)  # type: ignore[operator]
    # net back up: every order, once, even across a second restart mid-way.
    await three.start("net")
    await caught_up(three, "net")
    await three.stop("net")
    await three.start("net")
    await caught_up(three, "net")
    cursor = three.root / "c-drive"
    orders = await take(bundles["drive"], cursor, 3, AckOutcome.UNBOUND)
    assert sorted(o.account_ref for o in orders) == [b"drive-0", b"drive-1", b"drive-2"]
    assert {o.kind for o in orders} == {EventKind.REVOKE}
    assert await nothing_more(bundles["drive"], cursor)
    assert _count(three, "net", "SELECT count(*) FROM orders") == 3
    # At-least-once delivery: the whole log delivered again applies nothing; a batch that
    # skips a sequence is refused (the follower then resumes from its cursor).
    hub_log, replica = three.registry("hub").hub_log, three.registry("net").replica
    assert hub_log is not None and replica is not None
    batch = await hub_log.read(0, 1000)
    again = await replica.apply(batch.entries, batch.head_seq, batch.head_recorded_us)
    assert again.entries == 0 and again.applied_seq == batch.head_seq
    gap = replace(batch.entries[-1], seq=batch.head_seq + 2)
    with pytest.raises(FailedPrecondition, match="a gap"):
        await replica.apply([gap], gap.seq, batch.head_recorded_us)
    assert (await replica.cursor()).applied_seq == batch.head_seq
    assert _count(three, "net", "SELECT count(*) FROM orders") == 3


async def test_with_the_hub_down_members_serve_publish_feed_and_reassigned(
    three: Three,
) -> None:
    bundles, tokens = await _setup(three)
    async with carrier(bundles["cm"]) as c:
        await c.report([LifecycleReport(PHONES[0], Lifecycle.REISSUED, days_ago(10))])
    await caught_up(three, "bank")
    await caught_up(three, "net")
    # Each member's orders are leaves of its own log: wait until the hub and the other
    # member have cosigned a checkpoint covering them (the platforms' default policy).
    await cosigned(three, "bank")
    await cosigned(three, "net")
    await three.stop("hub")
    loan, drive = bundles["loan"], bundles["drive"]
    # CheckReassigned from each member's replica.
    for bundle in (loan, drive):
        got = await reassigned(bundle, tokens[0].key_id, tokens[0].token, [50, 5])
        assert got == [YES, NO]
    # The feed: the reissue's orders, proved under the default policy (the hub's
    # cosignature was made before it went down), then acked.
    await take_proved(loan, three.root / "c-loan")
    await take_proved(drive, three.root / "c-drive")
    # The ack is a new leaf of bank's log that the hub, down, never cosigns: proving it
    # waits (bounded) and then fails naming the hub's witness.
    ack_leaf = three.registry("bank").db.transact(log.head, write=False).size - 1
    async with secure_channel(loan) as channel:
        client = LogClient.for_bundle(channel, loan.directory, quorum_wait=1.5)
        with pytest.raises(LogProofError) as refused:
            await client.prove([ack_leaf])
        assert refused.value.failure == "quorum"
        assert "numbind.demo/witness/hub" in str(refused.value)
        # A platform that configures a quorum of one of the same two proves it (net's).
        assert {w.name for w in client.trust.witnesses} == {
            "numbind.demo/witness/hub",
            "numbind.demo/witness/net",
        }
        client = LogClient.for_bundle(
            channel,
            loan.directory,
            trust=replace(client.trust, quorum=1),
            quorum_wait=30.0,
        )
        (proved,) = await client.prove([ack_leaf])
        assert proved.entry is not None and proved.entry.get("t") == "ack"
    # Publish, with a token the platform already holds.
    r = await publish(drive, tokens[0], [(b"new", days_ago(2))])
    assert r.inserted == 1
    # Tokenising needs the federation's token service: refused plainly, not hanging.
    with pytest.raises(Exception) as info:
        await tokenize(drive, "+8613900000000")
    assert "UNAVAILABLE" in repr(info.value) or "token service" in str(info.value)
    await three.start("hub")
    await caught_up(three, "net")


async def test_bindings_never_leave_their_member(three: Three) -> None:
    bundles, _ = await _setup(three)
    async with carrier(bundles["cm"]) as c:
        await c.report([LifecycleReport(PHONES[1], Lifecycle.REISSUED, days_ago(10))])
    for member in ("bank", "net"):
        await caught_up(three, member)
    await three.stop_all()
    refs = {
        name: {bytes(r[0]) for r in _rows(three, name, "SELECT account_ref FROM bindings")}
        for name in ("hub", "bank", "net")
    }
    assert refs["hub"] == set()
    assert refs["bank"] == {b"loan-0", b"loan-1", b"loan-2"}
    assert refs["net"] == {b"drive-0", b"drive-1", b"drive-2"}
    # No other member's account_ref anywhere in a store, in any table.
    for name, others in (
        ("bank", refs["net"]),
        ("net", refs["bank"]),
        ("hub", refs["bank"] | refs["net"]),
    ):
        dump = _dump(three, name)
        assert not [ref for ref in others if ref in dump], name
    # The hub's bindings and orders (so its feeds) are empty; its lifecycle log is what
    # members followed.
    for table in ("bindings", "orders"):
        assert _count(three, "hub", f"SELECT count(*) FROM {table}") == 0
    assert _count(three, "hub", "SELECT count(*) FROM lifecycle_events") == 4


def _url(three: Three, name: str) -> str:
    return three.settings(name).effective_database_url


def _rows(three: Three, name: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of raw SQL: their column types are whatever the query selects."""
    engine = create_engine(_url(three, name))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _count(three: Three, name: str, sql: str) -> int:
    return int(_rows(three, name, sql)[0][0])


def _dump(three: Three, name: str) -> bytes:
    """Every value of every table of a store, as bytes."""
    engine = create_engine(_url(three, name))
    out = bytearray()
    try:
        with engine.connect() as conn:
            tables = [t for t in engine.dialect.get_table_names(conn) if t != "alembic_version"]
            for table in tables:
                for row in conn.execute(text(f"SELECT * FROM {table}")):
                    for v in row:
                        out += v if isinstance(v, bytes | memoryview) else str(v).encode()
    finally:
        engine.dispose()
    if name != "net" or not three.database_urls.get("net"):
        db_file = three.dir(name) / "registry.db"
        if db_file.exists():
            out += db_file.read_bytes()
    return bytes(out)
