"""Issue 12's registry behaviour across a key rotation (issue 9), over real gRPC: revoked
bindings (ListRevokedBindings, GetDigest's revoked count) answer in the store key and, like
GetDigest and ListBindings, not while the store is re-keyed; a stale republish stays
revoked in either form; a sync during a re-key waits, then skips what a holder revoked; a
holder's retry of an overdue order finds the binding under the new key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import (
    AckOutcome,
    CarrierClient,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Row,
    Scope,
)
from numbind.sdk.channel import secure_channel
from numbind.sdk.progress import Progress
from numbind.v1 import platforms_pb2, platforms_pb2_grpc

from tests.e2e._rekey import rekeyed, rotate, wait_rekeyed
from tests.e2e._story import carrier, days_ago

pytestmark = pytest.mark.slow

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def rows(n: int) -> list[Row]:
    return [
        Row(f"138{i:08d}", f"acct-{i}", T0 + timedelta(minutes=i), Kind.LOGIN) for i in range(n)
    ]


async def revoke_by_reissue(reg: RunningRegistry, client: PlatformClient, number: str) -> None:
    """The carrier reports the number reissued; the platform acks the order UNBOUND."""
    cm = reg.add_carrier("cm")
    async with CarrierClient(cm) as c:
        summary = await c.report(
            [LifecycleReport(number, Lifecycle.REISSUED, datetime.now(UTC) - timedelta(days=1))]
        )
    assert summary.orders_created == 1
    async for event in client.events(follow=False):
        await event.ack(AckOutcome.UNBOUND)


async def refused(call: Callable[[], Awaitable[Any]]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    return err.value


async def test_revoked_bindings_answer_in_the_store_key_and_wait_out_a_rekey(
    tmp_path: Path,
) -> None:
    async with running_registry(
        tmp_path / "data", rekey_batch_rows=1, rekey_pause_seconds=0.5
    ) as reg:
        bundle = reg.add_platform("acme")
        export = rows(6)
        async with PlatformClient(bundle) as client:
            await client.publish(export)
            await revoke_by_reissue(reg, client, export[2].phone)
            old = await client.key_id()
            ref = client.account_ref(export[2].account_id)
        digest = platforms_pb2.GetDigestRequest(bucket_bits=0)
        listing = platforms_pb2.ListBindingsRequest(bucket_bits=0, bucket=0)
        async with secure_channel(bundle) as channel:
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            assert (await stub.GetDigest(digest)).revoked == 1
            (before,) = (await stub.ListRevokedBindings(listing)).bindings
            assert (before.binding.token.key_id, before.binding.account_ref) == (old, ref)

            new = (await rotate(reg)).key.key_id
            # While rows move to the new key: UNAVAILABLE with a delay and the progress,
            # exactly as GetDigest and ListBindings answer.
            for call in (
                lambda: stub.GetDigest(digest),
                lambda: stub.ListRevokedBindings(listing),
                lambda: stub.ListBindings(listing),
            ):
                err = await refused(call)
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
                trailing = dict(err.trailing_metadata() or ())
                assert int(trailing["retry-after-ms"]) > 0
                assert re.fullmatch(r"\d+/(\d+|\?)", trailing["rekey-progress"])
            # The key rotated away from is named as not the store key, with the one to use.
            for call in (
                lambda: stub.GetDigest(platforms_pb2.GetDigestRequest(key_id=old)),
                lambda: stub.ListRevokedBindings(
                    platforms_pb2.ListBindingsRequest(bucket_bits=0, bucket=0, key_id=old)
                ),
            ):
                err = await refused(call)
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
                assert dict(err.trailing_metadata() or ())["store-key-id"] == new

            # A stale republish during the re-key (tokenised under the new key, the row in
            # whichever form) is left revoked and counted so.
            async with PlatformClient(bundle) as client:
                again = await client.publish([export[2]])
            assert (again.inserted, again.updated, again.revoked) == (0, 0, 1)

            await wait_rekeyed(reg)
            (after,) = (await stub.ListRevokedBindings(listing)).bindings
            assert after.binding.token.key_id == new
            assert after.binding.token.value == rekeyed(reg, old, new, before.binding.token.value)
            assert after.binding.account_ref == ref
            # Converted, not revoked again: the revocation time is the one the ack set.
            assert after.revoked_at == before.revoked_at
            got = await stub.GetDigest(digest)
            assert got.revoked == 1 and sum(b.count for b in got.buckets) == 5


async def test_a_sync_during_a_rekey_waits_then_skips_what_a_holder_revoked(
    tmp_path: Path,
) -> None:
    async with running_registry(
        tmp_path / "data", rekey_batch_rows=1, rekey_pause_seconds=0.2
    ) as reg:
        bundle = reg.add_platform("acme")
        export = rows(25)
        async with PlatformClient(bundle) as client:
            await client.publish(export)
            await revoke_by_reissue(reg, client, export[6].phone)
        new = (await rotate(reg)).key.key_id
        seen: list[Progress] = []
        async with PlatformClient(bundle, progress=seen.append) as client:
            plan = await client.sync(export, dry_run=True)
            summary = await client.sync(export)
        for s in (plan, summary):
            assert (s.revoked_skipped, s.revoked_positions) == (1, [7])
            assert (s.added, s.changed, s.withdrawn, s.refusal) == (0, 0, 0, "")
            assert s.key_id == new and s.server_bindings == 24
        assert summary.converged is True
        assert any(p.phase == "re-key" for p in seen)
        await wait_rekeyed(reg)


async def test_a_retry_of_an_overdue_order_after_a_rotation_asks_the_same_binding(
    tmp_path: Path,
) -> None:
    """The holder's first 一键解绑 went out under the old key; the platform did not answer in
    time; the key rotated. The retry, attested under the new key, finds the same number
    and the same binding (one identity), asks its platform again, and the ack settles it."""
    phone = "+8613800138000"
    async with running_registry(
        tmp_path / "data",
        order_deadline_seconds=1.0,
        rekey_batch_rows=1,
        rekey_pause_seconds=0.2,
    ) as reg:
        cm = reg.add_carrier("cm")
        shop = reg.add_platform("shop")
        async with PlatformClient(shop) as platform:
            await platform.publish([Row(phone, "acct-1", days_ago(300), Kind.LOGIN)])
            async with carrier(cm) as c:
                await c.report([LifecycleReport(phone, Lifecycle.ISSUED, days_ago(30))])
                first, n = await c.revoke("sub-1", phone, days_ago(30), Scope.ALL_PRE_TENURE)
                assert n == 1
                await asyncio.sleep(1.2)  # the order goes overdue
                new = (await rotate(reg)).key.key_id
                # The carrier's tokenizer moves to the new key after its next evaluation.
                await c.tokenize([phone])
                assert {t.key_id for t in await c.tokenize([phone])} == {new}
                (view,) = await c.query("sub-1", [(phone, days_ago(30))])
                assert [p.open_revocation for p in view.platforms] == [first]
                retry, n = await c.revoke("sub-1", phone, days_ago(30), Scope.ALL_PRE_TENURE)
                assert n == 1 and retry != first
                # Within its deadline, the retry is not doubled by a third ask.
                _, n = await c.revoke("sub-1", phone, days_ago(30), Scope.ALL_PRE_TENURE)
                assert n == 0
                events = [e async for e in platform.events(follow=False)]
                assert [e.revocation_id for e in events] == [first, retry]
                await events[1].ack(AckOutcome.UNBOUND)
                await events[0].ack(AckOutcome.ALREADY_GONE)
                (view,) = await c.query("sub-1", [(phone, days_ago(30))])
                assert view.platforms == []
                states = {r: (await c.revocation(r))[0].state for r in (first, retry)}
                assert states == {first: "DONE", retry: "DONE"}
        await wait_rekeyed(reg)
