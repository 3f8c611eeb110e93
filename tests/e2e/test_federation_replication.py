"""The seed story across a federation of three on loopback: carriers report at the hub,
members follow its lifecycle log and act on their own platforms' bindings. net keeps its
store on PostgreSQL when NUMBIND_TEST_DATABASE_URL is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from numbind.sdk import AckOutcome, EventKind, Lifecycle, LifecycleReport
from numbind.sdk.errors import ErrorCode, NumbindClientError
from numbind.v1 import platforms_pb2

from tests.conftest import IN_CI, PG_URL, reset_postgres
from tests.e2e._fed_story import acked, add, caught_up, nothing_more, positions, reassigned, take
from tests.e2e._story import carrier, days_ago, publish, tokenize
from tests.e2e._three import Three, make_three, running

PHONE = "+8613800138000"
YES, NO = platforms_pb2.REASSIGNED_ANSWER_REASSIGNED, platforms_pb2.REASSIGNED_ANSWER_NOT_REASSIGNED


def _net_database() -> str | None:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but NUMBIND_TEST_DATABASE_URL is not set")
        return None
    reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Three]:
    fed = make_three(tmp_path, net_database_url=_net_database())
    async with running(fed):
        yield fed


async def test_the_story_across_members(three: Three) -> None:
    cm = add(three, "hub", "carrier", "cm", "示例移动")
    loan = add(three, "bank", "platform", "loan", "示例小贷")
    drive = add(three, "net", "platform", "drive", "示例网盘")
    food = add(three, "net", "platform", "food", "示例外卖")
    platforms = {"loan": loan, "drive": drive, "food": food}
    cursors = {name: three.root / f"cursor-{name}" for name in platforms}
    # Platforms tokenise through their own member; the tokens are the federation's.
    token = await tokenize(loan, PHONE)
    assert (await tokenize(drive, PHONE)).token == token.token
    for name, bundle in platforms.items():
        r = await publish(bundle, token, [(f"old-{name}".encode(), days_ago(400))])
        assert r.inserted == 1
    async with carrier(cm) as c:
        s = await c.report(
            [
                LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(500)),
                LifecycleReport(PHONE, Lifecycle.DEACTIVATED, days_ago(100)),
            ]
        )
        # The hub holds no binding: its own report creates no notice...
        assert (s.applied, s.notices_created) == (2, 0)
        # ...each member creates its platforms' notices as it applies the log.
        for name, bundle in platforms.items():
            (notice,) = await take(bundle, cursors[name], 1)
            assert notice.kind == EventKind.NUMBER_DEACTIVATED
            assert notice.account_ref == f"old-{name}".encode()
        await publish(drive, token, [(b"new-holder", days_ago(5))])
        s = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
        assert s.applied == 1
        for name, bundle in platforms.items():
            (order,) = await take(bundle, cursors[name], 1, AckOutcome.UNBOUND)
            assert order.kind == EventKind.REVOKE
            assert order.account_ref == f"old-{name}".encode()
            assert order.seq == 2
            assert await nothing_more(bundle, cursors[name])
    # Reassigned-since, answered by each member from its own replica.
    for bundle in (loan, drive):
        assert await reassigned(bundle, token.key_id, token.token, [50, 5]) == [YES, NO]
    # `federation show`: each member's position in the hub's log, at the member and at
    # the hub (from the member's ack).
    for member in ("bank", "net"):
        seq = await caught_up(three, member)
        await acked(three, member, seq)
        assert positions(three, member)[member] == {"position": seq, "lag_seconds": 0.0}
        assert positions(three, "hub")[member] == {"position": seq, "lag_seconds": 0.0}
    assert positions(three, "hub")["hub"]["position"] == seq


async def test_a_member_refuses_lifecycle_reports_and_names_the_hub(three: Three) -> None:
    cm = add(three, "bank", "carrier", "cm")
    async with carrier(cm) as c:
        with pytest.raises(NumbindClientError) as info:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(5))])
    assert info.value.code == ErrorCode.FAILED_PRECONDITION
    assert f"lifecycle authority hub at {three.addresses['hub']}" in info.value.message
