"""The story that started it all, end to end over real gRPC: a number changes hands and
every binding the previous holder left is revoked everywhere, then confirmed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    AckOutcome,
    EventFeed,
    EventKind,
    FeedEvent,
    Lifecycle,
    LifecycleReport,
    Scope,
)
from numbind.sdk.channel import secure_channel
from numbind.v1 import admin_pb2, admin_pb2_grpc

from tests.e2e._story import carrier, days_ago, publish, tokenize

PHONE = "+8613800138000"


async def consume_and_ack(
    bundle: Bundle, cursor_file: Path, expect: int, outcome: AckOutcome | None
) -> list[FeedEvent]:
    got: list[FeedEvent] = []
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor_file)

        async def read() -> None:
            async for event in feed.events():
                await event.ack(outcome)
                got.append(event)
                if len(got) == expect:
                    return

        await asyncio.wait_for(read(), 10)
    return got


async def test_deactivate_then_reissue_revokes_everywhere(
    registry_any_store: RunningRegistry,
) -> None:
    registry = registry_any_store  # the whole story on SQLite and on PostgreSQL
    cm = registry.add_carrier("cm", "示例移动")
    platforms = [
        registry.add_platform(n, d, c)
        for n, d, c in (
            ("drive", "示例网盘", "cloud-drive"),
            ("food", "示例外卖", "food-delivery"),
            ("loan", "示例小贷", "lender"),
        )
    ]
    token = await tokenize(platforms[0], PHONE)
    for i, p in enumerate(platforms):
        r = await publish(p, token, [(f"old-holder-{i}".encode(), days_ago(400))])
        assert r.inserted == 1
    async with carrier(cm) as c:
        # The old holder got the number long ago; it is cancelled (freeze starts) ...
        s = await c.report(
            [
                LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(500)),
                LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(100)),
            ]
        )
        assert (s.applied, s.notices_created, s.orders_created) == (2, 3, 0)
        for i, p in enumerate(platforms):
            (notice,) = await consume_and_ack(p, registry.settings.data_dir / f"c{i}", 1, None)
            assert notice.kind == EventKind.NUMBER_DEACTIVATED
            assert notice.account_ref == f"old-holder-{i}".encode()
        # ... and 90 days later it is sold to a new holder, who binds it at one app.
        await publish(platforms[0], token, [(b"new-holder", days_ago(5))])
        s = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
        assert (s.applied, s.orders_created, s.notices_created) == (1, 3, 0)
        (revocation_id,) = s.revocation_ids
        for i, p in enumerate(platforms):
            (order,) = await consume_and_ack(
                p, registry.settings.data_dir / f"c{i}", 1, AckOutcome.UNBOUND
            )
            assert order.kind == EventKind.REVOKE and order.revocation_id == revocation_id
            assert order.seq == 2  # gap-free per platform: notice 1, order 2
        progress = await c.revocation(revocation_id)
        assert sorted(p.display_name for p in progress) == ["示例外卖", "示例小贷", "示例网盘"]
        assert {p.state for p in progress} == {"DONE"}
        # The new holder's 一证通查: nothing of the previous holder is left; their own
        # binding, made after the tenure start, was never touched.
        (view,) = await c.query("subscriber-42", [(PHONE, days_ago(10))])
        assert [(p.platform_id, p.pre_tenure, p.active_count) for p in view.platforms] == [
            ("drive", False, 1)
        ]
        # Reassigned-since, like the US RND: yes before the reissue, no after, never the date.
        answers = await c.check_reassigned(
            [(PHONE, days_ago(50)), (PHONE, days_ago(5)), ("+8613900000000", days_ago(50))]
        )
        assert answers == ["REASSIGNED", "NOT_REASSIGNED", "NO_DATA"]
    async with secure_channel(registry.admin_bundle) as channel:
        stats = await admin_pb2_grpc.AdminStub(channel).GetStats(admin_pb2.GetStatsRequest())
    assert stats.active_bindings == 1 and stats.orders_done == 6
    assert [u.reassigned_checks for u in stats.usage if u.principal_id == "cm"] == [3]


async def test_holder_one_click_with_reject_overdue_and_resume(
    tmp_path: Path, database_url: str
) -> None:
    from numbind.registry.testing import running_registry

    async with running_registry(
        tmp_path / "data", database_url=database_url, order_deadline_seconds=2.0
    ) as reg:
        cm = reg.add_carrier("cm")
        reject, late, flaky = (reg.add_platform(n) for n in ("reject", "late", "flaky"))
        token = await tokenize(reject, PHONE)
        await publish(reject, token, [(b"r1", days_ago(60))])
        await publish(late, token, [(b"l1", days_ago(60))])
        await publish(flaky, token, [(f"f{i}".encode(), days_ago(60 + i)) for i in range(5)])
        # Bound during the new holder's own tenure: not in ALL_PRE_TENURE.
        await publish(flaky, token, [(b"mine", days_ago(3))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
            (view,) = await c.query("sub-1", [(PHONE, days_ago(30))])
            pre = {p.platform_id: p.active_count for p in view.platforms if p.pre_tenure}
            mine = {p.platform_id: p.active_count for p in view.platforms if not p.pre_tenure}
            assert pre == {"reject": 1, "late": 1, "flaky": 5} and mine == {"flaky": 1}
            rid, orders = await c.revoke("sub-1", PHONE, days_ago(30), scope=Scope.ALL_PRE_TENURE)
            assert orders == 7
            (r,) = await consume_and_ack(reject, tmp_path / "cr", 1, AckOutcome.REJECTED)
            # reason is required for REJECTED: ack by hand with one.
            # flaky: two events acked, then the connection drops; resume from the cursor.
            first = await consume_and_ack(flaky, tmp_path / "cf", 2, AckOutcome.UNBOUND)
            rest = await consume_and_ack(flaky, tmp_path / "cf", 3, AckOutcome.UNBOUND)
            seen = [e.order_id for e in first + rest]
            assert len(seen) == len(set(seen)) == 5
            assert [e.seq for e in first + rest] == [1, 2, 3, 4, 5]
            await asyncio.sleep(2.2)  # "late" never acked within the 2 s deadline
            states = {p.platform_id: (p.state, p.reason) for p in await c.revocation(rid)}
            assert states["late"][0] == "OVERDUE"
            assert states["flaky"][0] == "DONE"
            assert states["reject"] == ("REJECTED", "account has an open loan")
            await consume_and_ack(late, tmp_path / "cl", 1, AckOutcome.ALREADY_GONE)
            final = {p.platform_id: p.state for p in await c.revocation(rid)}
            assert final["late"] == "DONE"
            (view,) = await c.query("sub-1", [(PHONE, days_ago(30))])
            left = {(p.platform_id, p.pre_tenure): p.active_count for p in view.platforms}
            # The refused binding stays; the holder's own binding was never in scope.
            assert left == {("reject", True): 1, ("flaky", False): 1}
        assert r.kind == EventKind.REVOKE


@pytest.fixture(autouse=True)
def _reason_for_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    """consume_and_ack passes no reason; give REJECTED acks the platform's reason."""
    original = FeedEvent.ack

    async def ack(self: FeedEvent, outcome: AckOutcome | None = None, reason: str = "") -> None:
        if outcome == AckOutcome.REJECTED and not reason:
            reason = "account has an open loan"
        await original(self, outcome, reason)

    monkeypatch.setattr(FeedEvent, "ack", ack)


async def test_concurrent_reports_for_new_numbers_all_succeed(
    registry_any_store: RunningRegistry,
) -> None:
    """Writers racing to establish the same numbers: the losers retry, nobody sees an error."""
    registry = registry_any_store
    cm = registry.add_carrier("cm")
    phones = [f"+86139{i:08d}" for i in range(20)]
    async with carrier(cm) as c:
        results = await asyncio.gather(
            *(
                c.report([LifecycleReport(p, Lifecycle.ISSUED, days_ago(30 - k)) for p in phones])
                for k in range(4)
            )
        )
        assert all(r.events == 20 for r in results)
        assert sum(r.applied for r in results) >= 20  # whoever ran first applied all of its
        # Whatever order the reports committed in, the newest ISSUED (k=3) is the tenure.
        views = await c.query("s", [(p, days_ago(30)) for p in phones[:3]])
        for view in views:
            assert view.tenure_start is not None
            assert abs((view.tenure_start - days_ago(27)).total_seconds()) < 1


async def test_platform_client_events_resume_from_the_persisted_cursor(
    registry: RunningRegistry,
) -> None:
    from numbind.sdk import PlatformClient

    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    token = await tokenize(p1, PHONE)
    await publish(p1, token, [(f"a{i}".encode(), days_ago(60 + i)) for i in range(3)])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(1))])
    async with PlatformClient(p1) as client:
        stream = client.events()
        first = await asyncio.wait_for(stream.__anext__(), 5)
        await first.ack(AckOutcome.UNBOUND)
        await stream.aclose()  # type: ignore[attr-defined]
    cursor = p1.directory / "feed-cursor.json"
    assert cursor.exists()
    async with PlatformClient(p1) as client:  # a restart: only the unacked two come back
        rest = [e async for e in client.events(follow=False)]
    assert [e.seq for e in rest] == [2, 3]
    assert first.order_id not in {e.order_id for e in rest}
