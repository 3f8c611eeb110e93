"""Federation gaps closed, over real gRPC (a hub and two members on loopback): a holder's
revocation naming a platform no member holds is refused, and a reissue's revocation shows
its progress per member at the hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from numbind.registry import operator
from numbind.registry.config import Settings
from numbind.registry.federation.files import FederationDir
from numbind.sdk import ErrorCode, Lifecycle, LifecycleReport, NumbindClientError, Scope
from numbind.sdk.admin import AdminClient
from numbind.sdk.channel import secure_channel
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

from tests.e2e._fanout import Node, federation_of_three, free_port
from tests.e2e._fed_story import add
from tests.e2e._federation import fed
from tests.e2e._story import carrier, days_ago, publish, take, tokenize
from tests.e2e._three import make_three, running
from tests.e2e.test_fanout import PHONE, SUBJECT, ack, count, seed


async def test_an_unknown_platform_id_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        hub_url = f.hub.settings.effective_database_url
        revocations = "SELECT count(*) FROM revocations"
        before = count(hub_url, revocations)
        async with carrier(cm) as c:
            with pytest.raises(NumbindClientError) as refused:
                await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.PLATFORMS, ["shop", "nowhere"])
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

            # With a member down, an id the others do not hold may be its: not refused,
            # and the member is listed until it gets the revocation.
            await f.stop(f.members["bank"])
            rid, orders = await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.PLATFORMS, ["pay", "nowhere"]
            )
            assert orders == 0  # pay is bank's; net holds neither
            status = await c.revocation_status(rid)
            assert [u.registry_id for u in status.unavailable] == ["bank"]


async def test_a_reissue_revocation_shows_progress_per_member_at_the_hub(tmp_path: Path) -> None:
    async with federation_of_three(tmp_path, fanout_deadline_seconds=1.0) as f:
        cm, apps = await seed(f)
        bank = f.members["bank"]
        await f.stop(bank)
        async with carrier(cm) as c:
            # shop (net) and loan (bank) were bound before the new tenure; pay after it.
            summary = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
            (rid,) = summary.revocation_ids
            (shop_event,) = await take(apps["shop"], tmp_path / "c-shop", 1)
            assert shop_event.revocation_id == rid
            status = await c.revocation_status(rid)
            assert [(p.platform_id, p.registry_id) for p in status.platforms] == [("shop", "net")]
            (down,) = status.unavailable
            assert down.registry_id == "bank"
            assert down.reason.startswith(("unreachable", "no answer within")), down.reason
            await ack(apps["shop"], tmp_path / "c-shop", [shop_event])

            # bank back: it applies the reissue under the hub's revocation id.
            await f.start(bank)
            (loan_event,) = await take(apps["loan"], tmp_path / "c-loan", 1, within=30)
            assert loan_event.revocation_id == rid
            for _ in range(100):
                status = await c.revocation_status(rid)
                if not status.unavailable and len(status.platforms) == 2:
                    break
                await asyncio.sleep(0.1)
            assert status.unavailable == ()
            assert {(p.platform_id, p.registry_id, p.state) for p in status.platforms} == {
                ("shop", "net", "DONE"),
                ("loan", "bank", "DELIVERED"),
            }
            await ack(apps["loan"], tmp_path / "c-loan", [loan_event])
            status = await c.revocation_status(rid)
            assert {(p.platform_id, p.state, p.orders) for p in status.platforms} == {
                ("shop", "DONE", 1),
                ("loan", "DONE", 1),
            }


async def test_a_member_behind_on_the_log_is_listed_not_left_out(tmp_path: Path) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        bank = f.members["bank"]
        follower = bank.server.follower if bank.server is not None else None
        assert follower is not None
        await follower.close()  # bank serves, but does not follow the hub's log
        async with carrier(cm) as c:
            summary = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
            (rid,) = summary.revocation_ids
            (shop_event,) = await take(apps["shop"], tmp_path / "c-shop", 1)
            assert shop_event.revocation_id == rid
            status = await c.revocation_status(rid)
            assert [(p.platform_id, p.registry_id) for p in status.platforms] == [("shop", "net")]
            assert [(u.registry_id, u.reason) for u in status.unavailable] == [
                ("bank", "has not applied this lifecycle event yet (replication is behind)")
            ]

            follower.start()
            (loan_event,) = await take(apps["loan"], tmp_path / "c-loan", 1, within=30)
            assert loan_event.revocation_id == rid
            for _ in range(100):
                status = await c.revocation_status(rid)
                if not status.unavailable:
                    break
                await asyncio.sleep(0.1)
            assert status.unavailable == ()
            assert {(p.platform_id, p.registry_id) for p in status.platforms} == {
                ("shop", "net"),
                ("loan", "bank"),
            }


async def test_a_rotation_at_the_hub_never_leaves_a_member_unavailable(tmp_path: Path) -> None:
    three = make_three(tmp_path)
    async with running(three):
        drive = add(three, "net", "platform", "drive")
        old = await tokenize(drive, PHONE)
        version = FederationDir(three.dir("hub")).require().manifest.version
        admin = AdminClient.from_bundle(
            three.dir("hub") / operator.ADMIN_BUNDLE, address=three.addresses["hub"]
        )
        try:
            rotation = await asyncio.to_thread(admin.rotate_key)
        finally:
            admin.close()
        new_key = rotation.key.key_id
        # At once, no `federation refresh`, one call, no retry: the member answers under
        # the new key (the token service already evaluates under it).
        async with secure_channel(drive) as channel:
            keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(
                tokens_pb2.GetKeysRequest(), timeout=20
            )
        assert keys.active_key_id == new_key
        assert {k.key_id for k in keys.keys} >= {old.key_id, new_key}
        # The hub signed the manifest listing the new key as it rotated.
        hub_manifest = FederationDir(three.dir("hub")).require().manifest
        assert hub_manifest.version == version + 1
        assert hub_manifest.token_service.active_key_id == new_key
        new = await tokenize(drive, PHONE)
        assert new.key_id == new_key and new.token != old.token
        assert FederationDir(three.dir("net")).require().manifest.version == version + 1


async def test_a_member_added_while_the_hub_runs_is_served_without_a_restart(
    tmp_path: Path,
) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, _ = await seed(f)
        hub_dir = f.hub.settings.data_dir
        before = FederationDir(hub_dir).require().manifest.version
        gov = Node(
            "gov",
            "示例政务平台登记",
            Settings(data_dir=tmp_path / "gov", listen=f"127.0.0.1:{free_port()}"),
        )
        operator.init(gov.settings, registry_address=gov.address)
        req, grant = tmp_path / "gov.req", tmp_path / "gov.grant"
        fed(
            "request",
            gov.settings.data_dir,
            *("--id", "gov", "--name", gov.name, "--address", gov.address, "--out", req),
        )
        fed("add-member", hub_dir, req, "--out", grant)  # the hub keeps running
        fed("accept", gov.settings.data_dir, grant)
        f.members["gov"] = gov
        await f.start(gov)
        # The hub takes gov's peer certificate at the handshake: gov follows its log.
        follower = gov.server.follower if gov.server is not None else None
        assert follower is not None
        await asyncio.wait_for(follower.connected.wait(), 30)

        tax = gov.add("platform", "tax", "示例税务", "other")
        token = await tokenize(tax, PHONE)
        await publish(tax, token, [(b"old-tax", days_ago(100))])
        async with carrier(cm) as c:
            # The hub fans out to gov too.
            for _ in range(100):
                (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
                if any(p.registry_id == "gov" for p in view.platforms):
                    break
                await asyncio.sleep(0.1)
            assert view.unavailable == ()
            assert ("tax", "gov") in {(p.platform_id, p.registry_id) for p in view.platforms}
            # And the reissue reaches gov's platform by replication.
            summary = await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
            (rid,) = summary.revocation_ids
        (event,) = await take(tax, tmp_path / "c-tax", 1, within=30)
        assert event.revocation_id == rid

        # The members already serving learn the new version from the hub's stream.
        for name in ("net", "bank"):
            data_dir = f.members[name].settings.data_dir
            for _ in range(100):
                if FederationDir(data_dir).require().manifest.version > before:
                    break
                await asyncio.sleep(0.1)
            assert FederationDir(data_dir).require().manifest.version == before + 1
