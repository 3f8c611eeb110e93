"""The new holder's view of a platform that refused to revoke the previous holder's bindings,
over real gRPC and `numbind carrier query`: the refusal's reason, its revocation and the
order to quote stay in the view while the bindings stay bound, for that group only, until
a later revocation supersedes it (DESIGN, "Flow of a revocation", steps 4-5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk import AckOutcome, EventFeed, FeedEvent, Lifecycle, LifecycleReport, Scope
from numbind.sdk.channel import secure_channel
from numbind.sdk.model import order_reference

from tests.e2e._cli import PHONE, cli, iso
from tests.e2e._story import carrier, days_ago, publish, take, tokenize

SUBJECT = "sub-new"
REASON = "账户存在未结清借款，请联系客服"


async def ack(
    bundle: Bundle, cursor: Path, events: list[FeedEvent], outcome: AckOutcome, reason: str = ""
) -> None:
    async with secure_channel(bundle) as channel:
        await EventFeed(channel, cursor).ack([(e, outcome, reason) for e in events])


async def test_a_refused_reissue_shows_in_the_new_holders_query_until_superseded(
    registry_any_store: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_any_store
    cm = reg.add_carrier("cm", "示例移动")
    drive = reg.add_platform("drive", "示例网盘", "cloud-drive")
    p3 = reg.add_platform("p3", "平台p3", "lender")
    token = await tokenize(drive, PHONE)
    await publish(drive, token, [(b"old-drive", days_ago(300))])
    await publish(p3, token, [(b"old-p3", days_ago(300)), (b"old-p3-2", days_ago(200))])
    tenure = days_ago(10)
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(400))])
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, tenure)])
        # The new holder's own account at p3, bound in their tenure: no order for it.
        await publish(p3, token, [(b"new-p3", days_ago(3))])
        (view,) = await c.query(SUBJECT, [(PHONE, tenure)])
        (pending,) = [p for p in view.platforms if p.platform_id == "p3" and p.pre_tenure]
        reissue = pending.open_revocation
        assert reissue and pending.refused is None

        first, second = await take(p3, tmp_path / "c-p3", 2)
        assert first.revocation_id == second.revocation_id == reissue
        await ack(p3, tmp_path / "c-p3", [first, second], AckOutcome.REJECTED, REASON)
        (drive_event,) = await take(drive, tmp_path / "c-drive", 1)
        await ack(drive, tmp_path / "c-drive", [drive_event], AckOutcome.UNBOUND)

        (view,) = await c.query(SUBJECT, [(PHONE, tenure)])
        seen = {(p.platform_id, p.pre_tenure): p for p in view.platforms}
        assert set(seen) == {("p3", True), ("p3", False)}
        refused = seen["p3", True]
        assert (refused.active_count, refused.open_revocation) == (2, "")
        assert refused.refused is not None
        assert (refused.refused.revocation_id, refused.refused.reason) == (reissue, REASON)
        # The order to quote is the group's first, as its feed carried it.
        assert refused.refused.order_id == first.order_id
        assert refused.refused.reference == order_reference(first.order_id) == first.reference
        assert refused.refused.refused_at is not None
        # The holder's own binding at the same platform was never asked: no refusal.
        assert seen["p3", False].refused is None

        # `numbind carrier query` says it: the reason and the reference to quote.
        query = ["carrier", "query", "--bundle", cm.directory, "--subject", SUBJECT]
        query += ["--phone", PHONE, "--tenure-start", iso(tenure)]
        rc, out, _ = await cli(capsys, *query)
        assert rc == 0
        (line,) = [ln for ln in out.splitlines() if "previous holder's" in ln]
        assert "平台p3 (p3, lender): 2 bindings" in line
        assert f"REJECTED revocation {reissue}: {REASON} [reference {first.reference}]" in line
        assert PHONE not in line and "old-p3" not in line
        rc, out, _ = await cli(capsys, *query, "--json")
        assert rc == 0
        (number,) = json.loads(out)["numbers"]
        by_class = {p["tenure_class"]: p for p in number["platforms"]}
        assert by_class["PRE_TENURE"]["refused_revocation"] == {
            "revocation_id": reissue,
            "reason": REASON,
            "reference": first.reference,
            "order_id": first.order_id,
            "refused_at": by_class["PRE_TENURE"]["refused_revocation"]["refused_at"],
        }
        assert by_class["IN_TENURE"]["refused_revocation"] is None

        # The holder names p3: the open revocation supersedes the refusal ...
        asked, n = await c.revoke(SUBJECT, PHONE, tenure, Scope.ALL_PRE_TENURE, ["p3"])
        assert n == 2
        (view,) = await c.query(SUBJECT, [(PHONE, tenure)])
        (again,) = [p for p in view.platforms if p.pre_tenure]
        assert (again.open_revocation, again.refused) == (asked, None)
        # ... and once p3 unbinds, the previous holder's bindings are gone, as before.
        events = await take(p3, tmp_path / "c-p3", 2)
        await ack(p3, tmp_path / "c-p3", events, AckOutcome.UNBOUND)
        (view,) = await c.query(SUBJECT, [(PHONE, tenure)])
        assert [(p.platform_id, p.pre_tenure, p.refused) for p in view.platforms] == [
            ("p3", False, None)
        ]


async def test_a_refusal_a_retry_refuses_again_names_the_latest(
    registry_any_store: RunningRegistry, tmp_path: Path
) -> None:
    reg = registry_any_store
    cm, shop = reg.add_carrier("cm"), reg.add_platform("shop", "示例购物", "e-commerce")
    token = await tokenize(shop, PHONE)
    await publish(shop, token, [(b"old", days_ago(300))])
    tenure = days_ago(10)
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(400))])
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, tenure)])
        (reissued,) = await take(shop, tmp_path / "c", 1)
        await ack(shop, tmp_path / "c", [reissued], AckOutcome.REJECTED, "under review")
        # The holder asks it by name after all; it refuses again, for another reason.
        asked, _ = await c.revoke(SUBJECT, PHONE, tenure, Scope.PLATFORMS, ["shop"])
        (again,) = await take(shop, tmp_path / "c", 1)
        await ack(shop, tmp_path / "c", [again], AckOutcome.REJECTED, REASON)
        (view,) = await c.query(SUBJECT, [(PHONE, tenure)])
        (p,) = view.platforms
        assert p.refused is not None
        assert (p.refused.revocation_id, p.refused.order_id, p.refused.reason) == (
            asked,
            again.order_id,
            REASON,
        )
