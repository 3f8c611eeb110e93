"""Federation gaps closed, over real gRPC (a hub and two members on loopback): a holder's
revocation naming a platform no member holds is refused, and a reissue's revocation shows
its progress per member at the hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from numbind.sdk import ErrorCode, Lifecycle, LifecycleReport, NumbindClientError, Scope

from tests.e2e._fanout import federation_of_three
from tests.e2e._story import carrier, days_ago
from tests.e2e.test_fanout import PHONE, SUBJECT, ack, count, seed, take


async def test_an_unknown_platform_id_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        hub_url = f.hub.settings.effective_database_url
        revocations = "SELECT count(*) FROM revocations"
        before = count(hub_url, revocations)
        async with carrier(cm) as c:
            with pytest.raises(NumbindClientError) as refused:
                await c.revoke(
                    SUBJECT, PHONE, days_ago(30), Scope.PLATFORMS, ["shop", "nowhere"]
                )
            assert refused.value.code is ErrorCode.NOT_FOUND
            assert "platform_ids[1]" in str(refused.value)
            assert "'nowhere'" in str(refused.value)
            # Nothing written: no revocation, no outbox entry, no order at any member.
            assert count(hub_url, revocations) == before
            assert count(hub_url, "SELECT count(*) FROM fanout_outbox") == 0
            for node in f.members.values():
                url = node.settings.effective_database_url
                assert count(url, "SELECT count(*) FROM orders") == 0

            # Ids that members hold (one at each) go through, each at its member.
            rid, orders = await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.PLATFORMS, ["shop", "loan"]
            )
            assert orders == 2
            (shop_event,) = await take(apps["shop"], tmp_path / "c-shop", 1)
            (loan_event,) = await take(apps["loan"], tmp_path / "c-loan", 1)
            assert shop_event.revocation_id == loan_event.revocation_id == rid
