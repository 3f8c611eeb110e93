"""Two syncs of one platform at once cannot together withdraw more than one may: the
registry holds each withdrawal to what the sync saw less its limit (`keep_at_least`),
counted under a lock. Each sync used to check its limit only against its own plan, and two
cron hosts syncing halves of a platform's export at once emptied it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from numbind.registry.testing import RunningRegistry
from numbind.sdk import Kind, PlatformClient, Record
from numbind.sdk.errors import Refused

from tests.tokens import random_token

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


async def _count(client: PlatformClient) -> int:
    return sum(b.count for b in (await client.digest(0)).values())


async def test_a_sync_planned_before_another_ran_cannot_empty_the_platform(
    registry_any_store: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = registry_any_store.add_platform("acme")
    async with PlatformClient(bundle) as a, PlatformClient(bundle) as b:
        key_id = await a.key_id()
        records = [
            Record(random_token(), key_id, b"ref-%d" % i, T0 + timedelta(seconds=i), Kind.LOGIN)
            for i in range(200)
        ]
        await a.publish_records(records)
        half_a, half_b = records[:100], records[100:]
        # b plans against all 200, then waits while a syncs its half (withdrawing b's);
        # b's plan then withdraws a's half: within its own limit of 100 of 200.
        planned, a_done = asyncio.Event(), asyncio.Event()
        _, rpc_b, _ = b._ensure()
        withdraw = rpc_b.withdraw

        async def after_a(*args: Any, **kwargs: Any) -> Any:
            planned.set()
            await a_done.wait()
            return await withdraw(*args, **kwargs)

        monkeypatch.setattr(rpc_b, "withdraw", after_a)
        second = asyncio.create_task(b.sync_records(half_b))
        await asyncio.wait_for(planned.wait(), 60)
        first = await a.sync_records(half_a)
        a_done.set()
        assert first.withdrawn == 100
        with pytest.raises(Refused, match="keep_at_least: this withdrawal would leave 0"):
            await second
        assert await _count(a) == 100  # before: 0, each sync within its limit


async def test_a_guarded_withdrawal_that_would_leave_too_few_withdraws_nothing(
    registry_any_store: RunningRegistry,
) -> None:
    bundle = registry_any_store.add_platform("acme")
    async with PlatformClient(bundle) as client:
        key_id = await client.key_id()
        records = [
            Record(random_token(), key_id, b"ref-%d" % i, T0 + timedelta(seconds=i), Kind.LOGIN)
            for i in range(200)
        ]
        await client.publish_records(records)
        _, rpc, _ = client._ensure()
        keys = [(r.token, r.account_ref) for r in records]

        async def withdraw(part: list[tuple[bytes, bytes]], keep: int) -> tuple[int, int]:
            where = ("withdrawal", list(range(1, len(part) + 1)))
            return await rpc.send_withdraw(key_id, part, where, keep)

        with pytest.raises(Refused, match="would leave 50 live bindings, fewer than the 100"):
            await withdraw(keys[:150], 100)
        assert await _count(client) == 200  # nothing withdrawn
        assert await withdraw(keys[:100], 100) == (100, 0)
        with pytest.raises(Refused):
            await withdraw(keys[100:101], 100)
        assert await withdraw(keys[100:101], 0) == (1, 0)  # no floor asked: as before
        assert await _count(client) == 99
