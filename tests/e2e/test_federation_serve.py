"""`numbind serve` with a federation installed: peers are principals with their own role,
reached over mTLS under the manifest's CAs; anything else is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.config import QuotaSettings, Settings
from numbind.registry.federation.channel import PeerChannels
from numbind.registry.federation.files import FederationDir
from numbind.sdk.channel import secure_channel
from numbind.sdk.errors import ErrorCode, NumbindClientError
from numbind.sdk.retry import RetryPolicy
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

from tests.e2e._fed_story import add
from tests.e2e._federation import fed
from tests.e2e._story import days_ago, publish, tokenize
from tests.e2e._three import Three, make_three, running
from tests.e2e.test_federation_mtls import forged_credentials

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Three:
    root = tmp_path_factory.mktemp("three")
    three = make_three(root)
    operator.init(Settings(data_dir=root / "rogue"))
    return three


def peers_of(three: Three, name: str) -> PeerChannels:
    files = FederationDir(three.dir(name))
    return PeerChannels(files, files.require().manifest.members)


async def get_keys(channel: grpc.aio.Channel) -> tokens_pb2.GetKeysResponse:
    stub = tokens_pb2_grpc.TokensStub(channel)
    response: tokens_pb2.GetKeysResponse = await stub.GetKeys(
        tokens_pb2.GetKeysRequest(), timeout=TIMEOUT
    )
    return response


async def test_members_reach_the_hub_as_registry_principals(pristine: Three) -> None:
    async with running(pristine, "hub") as three:
        for member in ("bank", "net"):
            peers = peers_of(three, member)
            try:
                keys = await get_keys(peers.get("hub"))
            finally:
                await peers.close()
            assert keys.active_key_id


async def test_a_peer_from_a_ca_outside_the_manifest_is_refused_at_the_handshake(
    pristine: Three,
) -> None:
    rogue = pristine.root / "rogue"
    async with running(pristine, "hub") as three:
        creds = forged_credentials(rogue, "bank", three.dir("hub"))
        async with grpc.aio.secure_channel(three.addresses["hub"], creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await get_keys(channel)
        # UNAVAILABLE: the TLS handshake failed; no call reached a servicer.
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value


async def test_a_member_ca_cannot_mint_a_platform_or_another_member(pristine: Three) -> None:
    async with running(pristine, "hub") as three:
        hub = three.dir("hub")
        for role, claimed, want in (
            ("platform", "acme", "does not verify under this registry's own CA"),
            ("registry", "net", "does not verify under member net's CA"),
        ):
            creds = forged_credentials(three.dir("bank"), claimed, hub, role=role)
            async with grpc.aio.secure_channel(three.addresses["hub"], creds) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await get_keys(channel)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
            assert want in (info.value.details() or "")


async def test_the_hub_own_principals_still_work(pristine: Three) -> None:
    async with running(pristine, "hub") as three:
        admin = Bundle.load(three.dir("hub") / operator.ADMIN_BUNDLE)
        async with grpc.aio.secure_channel(
            three.addresses["hub"], admin.channel_credentials()
        ) as channel:
            assert (await get_keys(channel)).active_key_id


async def test_a_member_dials_only_the_ca_the_manifest_names(pristine: Three) -> None:
    # bank dials net's address while the hub's server listens there: the hub's server
    # certificate is not from net's CA, so the handshake fails.
    async with running(pristine, "hub") as three:
        files = FederationDir(three.dir("bank"))
        # The hub's manifest: bank's own was signed before net joined.
        manifest = FederationDir(three.dir("hub")).require().manifest
        net = manifest.member("net")
        hub = manifest.member("hub")
        assert net is not None and hub is not None
        impostor = type(net)(net.id, net.name, hub.address, net.ca_pem, net.roles)
        peers = PeerChannels(files, [impostor])
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await get_keys(peers.get("net"))
        finally:
            await peers.close()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_member_gates_each_platform_and_the_hub_does_not_gate_the_member(
    pristine: Three,
) -> None:
    quota = QuotaSettings(rate_per_second=0.01, burst=3, daily_cap=100)
    async with running(pristine, "hub", "bank", quota=quota) as three:
        first, second = (add(three, "bank", "platform", f"quota-{i}") for i in (1, 2))
        phones = ["+8613800138000", "+8613800138001", "+8613800138002"]
        for bundle in (first, second):
            # Three each: the member's quota per platform; the hub lets the member through
            # (one bucket for the member would have refused the second platform).
            async with secure_channel(bundle) as channel:
                tok = Tokenizer(channel, retry=RetryPolicy(attempts=1))
                try:
                    assert len(await tok.tokenize(phones)) == 3
                    with pytest.raises(NumbindClientError) as info:
                        await tok.tokenize(["+8613800138003"])
                finally:
                    tok.close()
            assert info.value.code == ErrorCode.RESOURCE_EXHAUSTED


async def test_a_member_removed_while_the_hub_runs_is_refused_at_its_next_call(
    tmp_path: Path,
) -> None:
    async with running(make_three(tmp_path), "hub") as three:
        peers = peers_of(three, "net")
        try:
            assert (await get_keys(peers.get("hub"))).active_key_id
            fed("remove-member", three.dir("hub"), "net")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await get_keys(peers.get("hub"))
        finally:
            await peers.close()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "registry/net is not a member of federation demo" in (info.value.details() or "")
        # bank, still a member, goes on.
        bank = peers_of(three, "bank")
        try:
            assert (await get_keys(bank.get("hub"))).active_key_id
        finally:
            await bank.close()


async def test_the_hub_holds_no_bindings_a_platform_there_is_refused(pristine: Three) -> None:
    async with running(pristine, "hub") as three:
        stray = add(three, "hub", "platform", "stray")
        token = await tokenize(stray, "+8613800138000")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await publish(stray, token, [(b"acct", days_ago(1))])
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "this registry (hub) holds no bindings" in (info.value.details() or "")
    assert _bindings_at_hub(three) == 0


def _bindings_at_hub(three: Three) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(three.settings("hub").effective_database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM bindings")).scalar_one())
    finally:
        engine.dispose()
