"""The SDK across a key rotation: the Tokenizer follows the new active key by itself, and a
sync that meets a rotation (before, during or after its store re-key) waits it out and
re-tokenises, but never withdraws or re-publishes a binding because of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from numbind.protocol import voprf
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import errors
from numbind.sdk.admin import AdminClient
from numbind.sdk.channel import secure_channel
from numbind.sdk.model import Row
from numbind.sdk.platform import PlatformClient
from numbind.sdk.progress import Progress
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import admin_pb2

from tests.e2e._rekey import rotate, secret, stats, wait_rekeyed
from tests.e2e._story import days_ago

pytestmark = pytest.mark.slow


def _rows(n: int) -> list[Row]:
    return [Row(f"+86137{i:08d}", f"acct-{i}", days_ago(30 + i)) for i in range(n)]


async def test_tokenizer_follows_the_active_key_and_keeps_a_pinned_one(
    registry: RunningRegistry,
) -> None:
    bundle = registry.add_platform("acme")
    old = registry.registry.keys.active().key_id
    async with secure_channel(bundle) as channel:
        follow, pinned = Tokenizer(channel), Tokenizer(channel, key_id=old)
        try:
            assert {r.key_id for r in await follow.tokenize(["13800138000"])} == {old}
            new = (await rotate(registry)).key.key_id
            # The first evaluation after the rotation names the new active key ...
            assert {r.key_id for r in await follow.tokenize(["13800138001"])} == {old}
            # ... and the next call tokenises under it, without a restart.
            (after,) = await follow.tokenize(["13800138000"])
            assert after.key_id == new
            assert after.token == voprf.evaluate_element(
                secret(registry, new), b"+8613800138000", voprf.MODE_VOPRF
            )
            assert {r.key_id for r in await pinned.tokenize(["13800138000"])} == {old}
        finally:
            follow.close()
            pinned.close()


async def test_sync_during_a_rekey_waits_with_progress_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with running_registry(
        tmp_path / "data", rekey_batch_rows=1, rekey_pause_seconds=0.2
    ) as reg:
        bundle = reg.add_platform("acme")
        rows = _rows(25)
        async with PlatformClient(bundle) as client:
            await client.publish(rows)
        new = (await rotate(reg)).key.key_id
        seen: list[Progress] = []
        async with PlatformClient(bundle, progress=seen.append) as client:
            summary = await client.sync(rows)
        assert (summary.added, summary.changed, summary.withdrawn) == (0, 0, 0)
        assert summary.converged is True and summary.key_id == new
        waits = [p for p in seen if p.phase == "re-key"]
        assert waits and all(p.total == 25 and 0 <= p.done <= 25 for p in waits)
        assert (await stats(reg)).rekey.state == admin_pb2.REKEY_STATE_DONE


async def test_a_rotation_in_the_middle_of_a_sync_changes_nothing(tmp_path: Path) -> None:
    """The snapshot is tokenised under the old key, then the key rotates before the sync
    compares: it re-tokenises its snapshot under the new key and waits out the re-key."""
    async with running_registry(
        tmp_path / "data", rekey_batch_rows=2, rekey_pause_seconds=0.2
    ) as reg:
        bundle = reg.add_platform("acme")
        old = reg.registry.keys.active().key_id
        rows = _rows(30)
        async with PlatformClient(bundle) as client:
            await client.publish(rows)
        rotated: list[str] = []

        async def snapshot() -> AsyncIterator[Row]:
            for row in rows:
                yield row
            # Every row has been handed to the sync (and tokenised under the old key, as
            # the key was pinned before); the rotation lands before the comparison.
            rotated.append((await rotate(reg)).key.key_id)

        seen: list[Progress] = []
        async with PlatformClient(bundle, progress=seen.append) as client:
            assert await client.key_id() == old
            summary = await client.sync(snapshot())
        assert (summary.added, summary.changed, summary.withdrawn) == (0, 0, 0)
        assert summary.converged is True and summary.key_id == rotated[0] != old
        phases = [p.phase for p in seen]
        assert "re-tokenise" in phases and "re-key" in phases
        await wait_rekeyed(reg)


async def test_digest_during_a_rekey_is_a_typed_refusal_with_a_delay(tmp_path: Path) -> None:
    async with running_registry(
        tmp_path / "data", rekey_batch_rows=1, rekey_pause_seconds=0.5
    ) as reg:
        bundle = reg.add_platform("acme")
        async with PlatformClient(bundle) as client:
            await client.publish(_rows(10))
            old = await client.key_id()
            new = (await rotate(reg)).key.key_id
            with pytest.raises(errors.RekeyInProgress) as err:
                await client.digest(0, new)
            assert err.value.retry_after is not None and err.value.retry_after > 0
            assert err.value.rows_total in (None, 10) and err.value.rows_done <= 10
            with pytest.raises(errors.KeyRotated) as rotated:
                await client.digest(0, old)
            assert rotated.value.store_key_id == new
        # `numbind admin stats` shows the re-key's progress, rate and ETA.
        # The re-key counts its rows once it has started; until then the total reads 0.
        with AdminClient(reg.admin_bundle) as admin:
            for _ in range(100):
                progress = (await asyncio.to_thread(admin.stats)).rekey
                if progress is None or progress.rows_total or progress.state == "DONE":
                    break
                await asyncio.sleep(0.1)
        assert progress is not None
        assert (progress.from_key_id, progress.to_key_id) == (old, new)
        assert progress.state in ("RUNNING", "DONE") and progress.rows_total == 10
        assert 0 <= progress.rows_done <= 10
        assert {"rows_per_second", "eta_seconds", "started_at"} <= set(progress.as_json())
        await wait_rekeyed(reg)
        async with PlatformClient(bundle) as client:
            assert sum(b.count for b in (await client.digest(0)).values()) == 10
        # A second rotation is refused while a re-key runs, naming its progress.
        await rotate(reg)
        with pytest.raises(Exception, match=r"re-key from \w+ to \w+: \d+ of"):
            await rotate(reg)
        await asyncio.wait_for(wait_rekeyed(reg), 60)
