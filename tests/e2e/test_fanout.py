"""The hub's holder fan-out over real gRPC: a hub and two members on loopback (one member on
PostgreSQL when NUMBIND_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import Principal
from numbind.registry.federation.fanout_client import GrpcMemberClient
from numbind.registry.services.fanout_model import AdmittedNumber, MemberRevocation
from numbind.registry.storage import fanout
from numbind.registry.storage.db import Database
from numbind.sdk import AckOutcome, EventFeed, FeedEvent, Lifecycle, LifecycleReport, Scope
from numbind.sdk.channel import secure_channel
from numbind.v1 import fanout_pb2, fanout_pb2_grpc
from sqlalchemy import text

from tests.e2e._fanout import Federation, Node, federation_of_three, peer_credentials_of
from tests.e2e._story import carrier, days_ago, publish, take, tokenize

PHONE = "+8613800138000"
SUBJECT = "sub-1"


async def ack(bundle: Bundle, cursor: Path, events: list[FeedEvent], reason: str = "") -> None:
    """UNBOUND, or REJECTED for `reason`."""
    outcome = AckOutcome.REJECTED if reason else AckOutcome.UNBOUND
    async with secure_channel(bundle) as channel:
        await EventFeed(channel, cursor).ack([(e, outcome, reason) for e in events])


async def seed(f: Federation) -> tuple[Bundle, dict[str, Bundle]]:
    """A carrier at the hub; shop at net and loan, pay at bank; the previous holder's
    bindings at shop and loan, the new holder's own at pay."""
    cm = f.hub.add("carrier", "cm", "示例移动")
    net, bank = f.members["net"], f.members["bank"]
    apps = {
        "shop": net.add("platform", "shop", "示例购物", "e-commerce"),
        "loan": bank.add("platform", "loan", "示例贷款", "lender"),
        "pay": bank.add("platform", "pay", "示例支付", "payments"),
    }
    token = await tokenize(apps["shop"], PHONE)
    assert (await tokenize(apps["loan"], PHONE)).token == token.token
    await publish(apps["shop"], token, [(b"old-shop", days_ago(300))])
    await publish(apps["loan"], token, [(b"old-loan", days_ago(200))])
    await publish(apps["pay"], token, [(b"new-pay", days_ago(5))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
    return cm, apps


def count(url: str, sql: str) -> int:
    db = Database(url)
    try:
        return int(db.transact(lambda s: s.execute(text(sql)).scalar_one(), write=False))
    finally:
        db.close()


async def test_holder_calls_span_both_members(tmp_path: Path, database_url: str) -> None:
    async with federation_of_three(tmp_path, member_database_urls={"bank": database_url}) as f:
        cm, apps = await seed(f)
        async with carrier(cm) as c:
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert view.unavailable == ()
            seen = {
                (p.platform_id, p.pre_tenure, p.registry_id, p.registry_name)
                for p in view.platforms
            }
            assert seen == {
                ("shop", True, "net", "示例互联网平台登记"),
                ("loan", True, "bank", "示例金融平台登记"),
                ("pay", False, "bank", "示例金融平台登记"),
            }

            rid, orders = await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE, request_id="r-1"
            )
            assert orders == 2
            # The same request again: the same revocation, nothing created twice.
            assert await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE, request_id="r-1"
            ) == (rid, 2)
            (shop_event,) = await take(apps["shop"], tmp_path / "c-shop", 1)
            (loan_event,) = await take(apps["loan"], tmp_path / "c-loan", 1)
            assert shop_event.revocation_id == loan_event.revocation_id == rid
            await ack(apps["shop"], tmp_path / "c-shop", [shop_event])
            await ack(apps["loan"], tmp_path / "c-loan", [loan_event], "未结清借款")

            status = await c.revocation_status(rid)
            assert status.unavailable == ()
            assert {(p.platform_id, p.registry_id, p.state) for p in status.platforms} == {
                ("shop", "net", "DONE"),
                ("loan", "bank", "REJECTED"),
            }
            # The refusal comes through the hub from its member, with what to quote.
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [(p.platform_id, p.registry_id) for p in view.platforms] == [
                ("loan", "bank"),
                ("pay", "bank"),
            ]
            loan, pay = view.platforms
            assert loan.refused is not None and pay.refused is None
            assert (loan.refused.revocation_id, loan.refused.reason) == (rid, "未结清借款")
            assert loan.refused.reference == loan_event.reference

    # Privacy: the hub holds no binding; each member only its own platforms'.
    hub_url = f.hub.settings.effective_database_url
    assert count(hub_url, "SELECT count(*) FROM bindings") == 0
    for node, mine in ((f.members["net"], {"shop"}), (f.members["bank"], {"loan", "pay"})):
        url = node.settings.effective_database_url
        names = count(
            url,
            "SELECT count(DISTINCT p.name) FROM bindings b JOIN principals p "
            "ON p.pk = b.platform_pk",
        )
        assert names == len(mine)


@asynccontextmanager
async def silent_listener(address: str) -> AsyncIterator[None]:
    """Accepts connections at `address` and never answers (a hung member)."""
    host, _, port = address.rpartition(":")
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, host, int(port))
    try:
        yield
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def hub_dialling(f: Federation, member: Node, within: float = 5.0) -> None:
    """Returns once the hub's fan-out channel to `member` is attempting a connection.

    A call on a channel in TRANSIENT_FAILURE fails at once with its last error (the member
    refused while it was down) instead of waiting for the listener now at its address; and
    grpc's pick_first keeps the channel in TRANSIENT_FAILURE until a connection is READY,
    which a silent listener never lets happen. So the hub must not have dialled the member
    between its stop and the listener opening, and the channel must be CONNECTING before
    the call under test is made."""
    members = f.hub.registry.members
    assert members is not None
    client = members.member(member.member_id)
    assert isinstance(client, GrpcMemberClient)
    loop = asyncio.get_running_loop()
    until = loop.time() + within
    state = client.channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.CONNECTING and loop.time() < until:
        await asyncio.sleep(0.01)
        state = client.channel.get_state(try_to_connect=True)
    assert state == grpc.ChannelConnectivity.CONNECTING, (
        f"the hub's channel to {member.member_id} is {state.name}, not CONNECTING, after "
        f"{within:g} s: a call dialled it while it was down, and its calls would fail at "
        "once with that refusal"
    )


async def test_a_member_down_is_listed_and_gets_its_revocation_once_back(
    tmp_path: Path,
) -> None:
    # The hub witnesses bank's log over the fan-out channel on its own clock (every 1 s by
    # default): a round that dials bank while it is down leaves the channel failing at once
    # (see hub_dialling). Here a round runs at start and the next an hour later, so the
    # calls this test makes are the only ones that dial bank.
    async with federation_of_three(
        tmp_path,
        fanout_deadline_seconds=1.0,
        fanout_retry_max_seconds=0.5,
        log_witness_seconds=3600,
    ) as f:
        cm, apps = await seed(f)
        bank = f.members["bank"]
        await f.stop(bank)
        async with carrier(cm) as c:
            # Hung rather than gone (it takes connections and never answers): the hub's
            # deadline cuts it off.
            async with silent_listener(bank.address):
                await hub_dialling(f, bank)
                (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [p.platform_id for p in view.platforms] == ["shop"]
            assert [(u.registry_id, u.registry_name, u.reason) for u in view.unavailable] == [
                ("bank", "示例金融平台登记", "no answer within 1 s")
            ]
            # Gone: refused at once.
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [p.platform_id for p in view.platforms] == ["shop"]
            (down,) = view.unavailable
            assert down.registry_id == "bank"
            assert down.reason.startswith(("unreachable", "no answer within")), down.reason

            rid, orders = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
            assert orders == 1  # shop's; loan's waits at the hub
            status = await c.revocation_status(rid)
            assert [p.platform_id for p in status.platforms] == ["shop"]
            (pending,) = status.unavailable
            assert pending.registry_id == "bank"
            assert pending.reason.startswith("not delivered yet, the hub retries")

            await f.start(bank)
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

        # Delivered again (a retry whose answer was lost): nothing new at the member.
        hub_principal = await bank.registry.directory.lookup("registry", "hub")
        assert isinstance(hub_principal, Principal)
        entries = f.hub.registry.db.transact(lambda s: fanout.for_revocation(s, rid), write=False)
        assert [(e.member_id, e.delivered, e.orders) for e in entries] == [
            ("bank", True, 1),
            ("net", True, 1),
        ]
        again = MemberRevocation.from_json(entries[0].request)
        assert await bank.registry.member_holders.revoke(hub_principal, again) == 1
        assert (
            count(
                bank.settings.effective_database_url,
                f"SELECT count(*) FROM orders WHERE revocation_id = '{rid}'",
            )
            == 1
        )
        # The loan platform's feed holds that one order, nothing after it.
        async with secure_channel(apps["loan"]) as channel:
            feed = EventFeed(channel, tmp_path / "c-loan")
            await feed.ack([(loan_event, AckOutcome.UNBOUND, "")])
        with pytest.raises(TimeoutError):
            await take(apps["loan"], tmp_path / "c-loan", 1, within=1.0)


async def test_a_revocation_the_retry_loop_is_delivering_is_counted_in_the_reply(
    tmp_path: Path,
) -> None:
    """The carrier's request delivers its revocation to each member at once, and the hub's
    retry loop may pick the same new outbox rows up meanwhile. The request then awaits that
    delivery: it answered 0 orders before (net's delivery was left to the loop, uncounted)."""
    async with federation_of_three(
        tmp_path, fanout_deadline_seconds=1.0, fanout_retry_max_seconds=0.5
    ) as f:
        cm, _ = await seed(f)
        await f.stop(f.members["bank"])
        fed = f.hub.registry.federated
        members = f.hub.registry.members
        assert fed is not None and members is not None
        net = members.member("net")
        assert isinstance(net, GrpcMemberClient)
        revoke, entries = net.revoke, fed._entries

        async def slow_revoke(request: MemberRevocation, deadline_seconds: float) -> int:
            await asyncio.sleep(0.3)  # long enough for the request to find it in flight
            return await revoke(request, deadline_seconds)

        async def entries_once_the_loop_delivers(revocation_id: str) -> list[fanout.OutboxEntry]:
            fed._entries = entries  # type: ignore[method-assign]  # the request's read only
            for _ in range(300):  # the loop looks every 0.5 s
                if (revocation_id, "net") in fed._in_flight:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the retry loop never picked the new revocation up")
            return await entries(revocation_id)

        net.revoke = slow_revoke  # type: ignore[method-assign]
        fed._entries = entries_once_the_loop_delivers  # type: ignore[method-assign]
        async with carrier(cm) as c:
            rid, orders = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
            assert orders == 1  # shop's, at net; loan's waits at the hub for bank
            status = await c.revocation_status(rid)
        assert [u.registry_id for u in status.unavailable] == ["bank"]
        assert [(p.platform_id, p.registry_id) for p in status.platforms] == [("shop", "net")]


async def test_only_the_hub_may_ask_a_member(tmp_path: Path) -> None:
    async with federation_of_three(tmp_path) as f:
        bank = f.members["bank"]
        number = AdmittedNumber(b"\x00" * 32, "k", 0)
        request = fanout_pb2.MemberQueryRequest(
            numbers=[fanout_pb2.AdmittedNumber(token=number.token, key_id=number.key_id)]
        )
        shop = bank.add("platform", "shop")
        async with secure_channel(shop) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await fanout_pb2_grpc.MemberHoldersStub(channel).MemberQuery(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "role 'platform' may not call" in (err.value.details() or "")

        # Another member's registry identity is a peer, but not the hub.
        creds = peer_credentials_of(f.members["net"].settings, bank.settings)
        async with grpc.aio.secure_channel(bank.address, creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await fanout_pb2_grpc.MemberHoldersStub(channel).MemberQuery(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not this federation's lifecycle authority" in (err.value.details() or "")


async def test_a_federation_of_one_names_no_registry(registry: object) -> None:
    from numbind.registry.testing import RunningRegistry

    assert isinstance(registry, RunningRegistry)
    cm = registry.add_carrier("cm")
    shop = registry.add_platform("shop")
    token = await tokenize(shop, PHONE)
    await publish(shop, token, [(b"old", days_ago(300))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
        (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
        assert [(p.platform_id, p.registry_id) for p in view.platforms] == [("shop", "")]
        assert view.unavailable == ()
        rid, orders = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
        status = await c.revocation_status(rid)
        assert orders == 1 and status.unavailable == ()
    assert registry.registry.members is None
