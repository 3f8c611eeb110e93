"""Key rotation at the hub reaches members: the hub's delta comes down the replication
stream, each member re-keys its own store, and a refreshed manifest (installed from the
stream) lets its platforms tokenise under the new key through their member."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from numbind.registry import operator
from numbind.registry.federation.files import FederationDir
from numbind.sdk import AckOutcome, EventKind, Lifecycle, LifecycleReport
from numbind.sdk.admin import AdminClient

from tests.e2e._fed_story import add, caught_up, take
from tests.e2e._federation import fed
from tests.e2e._story import carrier, days_ago, publish, tokenize
from tests.e2e._three import Three, make_three, running
from tests.e2e.test_federation_replication import _net_database

PHONE = "+8613800138000"


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Three]:
    fed_ = make_three(tmp_path, net_database_url=_net_database())
    async with running(fed_, rekey_batch_rows=2):
        yield fed_


async def _rekeyed(three: Three, member: str, key_id: str) -> None:
    token_map = three.registry(member).token_map
    for _ in range(300):
        token_map.invalidate()
        view = await token_map.view()
        if view.store_key_id == key_id and not view.rekeying:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{member} did not re-key to {key_id}")


async def test_rotation_at_the_hub_rekeys_every_member(three: Three) -> None:
    cm = add(three, "hub", "carrier", "cm")
    loan = add(three, "bank", "platform", "loan")
    drive = add(three, "net", "platform", "drive")
    old = await tokenize(loan, PHONE)
    for i, bundle in enumerate((loan, drive)):
        await publish(bundle, old, [(f"old-{i}".encode(), days_ago(400))])
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(500))])
    version = FederationDir(three.dir("hub")).require().manifest.version

    admin = AdminClient.from_bundle(
        three.dir("hub") / operator.ADMIN_BUNDLE, address=three.addresses["hub"]
    )
    try:
        rotation = await asyncio.to_thread(admin.rotate_key)
    finally:
        admin.close()
    new_key = rotation.key.key_id
    assert new_key != old.key_id
    fed("refresh", three.dir("hub"))
    for member in ("bank", "net"):
        await _rekeyed(three, member, new_key)
        # The refreshed manifest arrived by the stream, verified and newer.
        for _ in range(100):
            if FederationDir(three.dir(member)).require().manifest.version > version:
                break
            await asyncio.sleep(0.1)
        assert FederationDir(three.dir(member)).require().manifest.version == version + 1

    # Platforms tokenise under the new key through their member; the same number still.
    new = await tokenize(drive, PHONE)
    assert new.key_id == new_key and new.token != old.token
    assert (await tokenize(loan, PHONE)).token == new.token
    # A reissue after the rotation revokes the bindings published before it, everywhere,
    # under the new key.
    async with carrier(cm) as c:
        await c.report([LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10))])
    for i, bundle in enumerate((loan, drive)):
        (order,) = await take(bundle, three.root / f"c{i}", 1, AckOutcome.UNBOUND)
        assert order.kind == EventKind.REVOKE and order.account_ref == f"old-{i}".encode()
        assert (order.key_id, order.token) == (new_key, new.token)
    for member in ("bank", "net"):
        await caught_up(three, member)
