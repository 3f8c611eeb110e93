"""How the hub admits a holder query before its fan-out, over real gRPC (a hub and two
members on loopback): the nonce write runs beside the members' reads, never in front of
them, and single use holds all the same: nothing is answered before the nonce is spent, and
a replayed attestation is refused (before any member is asked, when it is a plain replay)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from numbind.protocol import attestation
from numbind.protocol.bundle import Bundle
from numbind.registry.federation.fanout_client import GrpcMemberClient
from numbind.registry.services.fanout import FederatedHolders
from numbind.registry.services.holders import HolderService
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import TokenResult
from numbind.v1 import holders_pb2, holders_pb2_grpc

from tests.e2e._fanout import Federation, federation_of_three
from tests.e2e._story import days_ago, tokenize
from tests.e2e.test_fanout import PHONE, SUBJECT, seed


def _signed(
    cm: Bundle, token: TokenResult, purpose: attestation.Purpose
) -> holders_pb2.SignedAttestation:
    data, sig = attestation.issue(
        cm.attestation_signing_key(),
        carrier_id=cm.principal_id,
        token=token.token,
        key_id=token.key_id,
        subject=SUBJECT,
        tenure_start_us=int(days_ago(30).timestamp() * 1e6),
        purpose=purpose,
    )
    return holders_pb2.SignedAttestation(attestation=data, signature=sig)


def _query(cm: Bundle, token: TokenResult) -> holders_pb2.QueryBindingsRequest:
    return holders_pb2.QueryBindingsRequest(
        attestations=[_signed(cm, token, attestation.Purpose.QUERY)]
    )


@contextmanager
def hub_write_lock(f: Federation) -> Iterator[None]:
    """The hub's SQLite write lock, held from outside: its writes wait until the block ends."""
    url = f.hub.settings.effective_database_url
    conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the members the hub asked, in order; an event is set on each ask."""
    seen: list[str] = []
    original = GrpcMemberClient.query

    async def query(self: GrpcMemberClient, numbers: Sequence[Any], deadline: float) -> Any:
        seen.append(self.member.id)
        return await original(self, numbers, deadline)

    monkeypatch.setattr(GrpcMemberClient, "query", query)
    return seen


async def _wait_for(cond: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + within
    while not cond():
        assert loop.time() < until, "timed out"
        await asyncio.sleep(0.02)


async def test_members_are_asked_while_the_nonce_is_written_and_replays_refused(
    tmp_path: Path, asked: list[str]
) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        token = await tokenize(apps["shop"], PHONE)
        request = _query(cm, token)
        async with secure_channel(cm) as channel:
            stub = holders_pb2_grpc.HoldersStub(channel)
            with hub_write_lock(f):
                call = asyncio.ensure_future(stub.QueryBindings(request, timeout=30))
                # The members are asked although the hub cannot write its nonce yet ...
                await _wait_for(lambda: sorted(asked) == ["bank", "net"])
                await asyncio.sleep(0.3)
                # ... and nothing is answered until it has.
                assert not call.done()
            response = await call
            (number,) = response.numbers
            assert {p.platform_id for p in number.platforms} == {"shop", "loan", "pay"}
            assert not response.unavailable

            # The same attestation again is a replay: refused, and no member is asked.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.QueryBindings(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "attestations[0].nonce: this attestation was already used" in (
                err.value.details() or ""
            )
            assert len(asked) == 2

            # Two calls with one attestation at once both get past the read-only checks
            # (the nonce is not written yet): exactly one is answered.
            twin = _query(cm, token)
            with hub_write_lock(f):
                calls = [
                    asyncio.ensure_future(stub.QueryBindings(twin, timeout=30)) for _ in range(2)
                ]
                await _wait_for(lambda: len(asked) == 6)
            results = await asyncio.gather(*calls, return_exceptions=True)
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            assert len(refused) == 1, results
            assert refused[0].code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_revocation_is_validated_once_and_its_outbox_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with federation_of_three(tmp_path) as f:
        cm, apps = await seed(f)
        validated: list[str] = []
        validate = HolderService.validate_revocation

        def counting(request_id: str, scope: int, platform_ids: Sequence[str]) -> None:
            validated.append(request_id)
            validate(request_id, scope, platform_ids)

        monkeypatch.setattr(HolderService, "validate_revocation", staticmethod(counting))
        reads: list[str] = []
        entries = FederatedHolders._entries

        async def counting_entries(self: FederatedHolders, revocation_id: str) -> Any:
            reads.append(revocation_id)
            return await entries(self, revocation_id)

        monkeypatch.setattr(FederatedHolders, "_entries", counting_entries)
        token = await tokenize(apps["shop"], PHONE)
        async with secure_channel(cm) as channel:
            response = await holders_pb2_grpc.HoldersStub(channel).RequestRevocation(
                holders_pb2.RequestRevocationRequest(
                    request_id="r-once",
                    attestation=_signed(cm, token, attestation.Purpose.REVOKE),
                    scope=holders_pb2.REVOCATION_SCOPE_PLATFORMS,
                    platform_ids=["shop", "loan"],
                ),
                timeout=30,
            )
        assert response.orders == 2 and not response.unavailable
        assert validated == ["r-once"]
        assert reads == [response.revocation_id]
