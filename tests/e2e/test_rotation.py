"""Key rotation keeps one identity per number (issue 9), over real gRPC with the real SDK:
the two scenarios that used to split a number in two, during a store re-key and after it.

During: the re-key converts one row per batch with a pause after each, and the numbers it
meets first are fillers chosen (from the key file) to sort before the scenario's numbers,
so the scenario's rows are still under the old key while the scenario runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import pytest
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.registry.storage.models import NumberRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import (
    CarrierClient,
    EventFeed,
    EventKind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Row,
    Tokenizer,
    TokenResult,
    errors,
)
from numbind.sdk.channel import secure_channel
from numbind.v1 import (
    admin_pb2,
    carriers_pb2,
    carriers_pb2_grpc,
    common_pb2,
    platforms_pb2,
    platforms_pb2_grpc,
)
from sqlalchemy import select

from tests.e2e._rekey import rekeyed, rotate, secret, stats, wait_rekeyed
from tests.e2e._story import days_ago, ts

pytestmark = pytest.mark.slow

FILLERS = 12
# During: each batch converts one row, then the re-key pauses, so the fillers alone keep
# the scenario's numbers under the old key for FILLERS * PAUSE seconds.
PAUSE = 1.5
REASSIGNED, NOT_REASSIGNED = (
    platforms_pb2.REASSIGNED_ANSWER_REASSIGNED,
    platforms_pb2.REASSIGNED_ANSWER_NOT_REASSIGNED,
)


def _phones(reg: RunningRegistry, key_id: str) -> tuple[str, str, list[str]]:
    """Two scenario numbers whose tokens under `key_id` sort after every filler's."""
    sk = secret(reg, key_id)
    candidates = [f"+86139{i:08d}" for i in range(FILLERS + 8)]
    ranked = sorted(
        candidates, key=lambda n: voprf.evaluate_element(sk, n.encode(), voprf.MODE_VOPRF)
    )
    return ranked[-1], ranked[-2], ranked[:FILLERS]


async def _under(bundle: Bundle, key_id: str, phones: list[str]) -> list[TokenResult]:
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel, key_id=key_id)
        try:
            return await tok.tokenize(phones)
        finally:
            tok.close()


async def _report_under(
    bundle: Bundle, key_id: str, phone: str, kind: int, when: datetime
) -> carriers_pb2.ReportLifecycleResponse:
    (t,) = await _under(bundle, key_id, [phone])
    async with secure_channel(bundle) as channel:
        return await carriers_pb2_grpc.CarriersStub(channel).ReportLifecycle(
            carriers_pb2.ReportLifecycleRequest(
                request_id=uuid.uuid4().hex,
                events=[
                    carriers_pb2.LifecycleEvent(
                        token=common_pb2.Token(key_id=t.key_id, value=t.token),
                        kind=kind,  # type: ignore[arg-type]
                        effective_at=ts(when),
                    )
                ],
            )
        )


async def _reassigned_under(
    bundle: Bundle, key_id: str, queries: list[tuple[str, datetime]]
) -> list[int]:
    tokens = await _under(bundle, key_id, [p for p, _ in queries])
    async with secure_channel(bundle) as channel:
        resp = await platforms_pb2_grpc.PlatformsStub(channel).CheckReassigned(
            platforms_pb2.CheckReassignedRequest(
                queries=[
                    platforms_pb2.ReassignedQuery(
                        token=common_pb2.Token(key_id=t.key_id, value=t.token), since=ts(since)
                    )
                    for t, (_, since) in zip(tokens, queries, strict=True)
                ]
            )
        )
    return list(resp.answers)


def _number_key(reg: RunningRegistry, phone: str, key_id: str) -> str | None:
    """The key id of the number row holding `phone`'s token under `key_id`, if any."""
    token = voprf.evaluate_element(secret(reg, key_id), phone.encode(), voprf.MODE_VOPRF)
    return reg.registry.db.transact(
        lambda s: s.scalar(select(NumberRow.key_id).where(NumberRow.token == token)), write=False
    )


async def _scenarios(reg: RunningRegistry, *, during: bool) -> None:
    cm, cu, p = reg.add_carrier("cm"), reg.add_carrier("cu"), reg.add_platform("p")
    old = reg.registry.keys.active().key_id
    phone_a, phone_b, fillers = _phones(reg, old)
    async with CarrierClient(cm) as c:
        numbers = [phone_a, phone_b, *fillers]
        await c.report([LifecycleReport(n, Lifecycle.ISSUED, days_ago(500)) for n in numbers])
    async with PlatformClient(p) as pc:
        await pc.publish([Row(phone_a, "acct-a", days_ago(400))])
        ref_a, ref_b = pc.account_ref("acct-a"), pc.account_ref("acct-b")
    new = (await rotate(reg)).key.key_id
    if during:
        assert _number_key(reg, phone_a, old) == old  # not re-keyed yet
    else:
        await wait_rekeyed(reg)
        assert _number_key(reg, phone_a, new) == new

    # 1. A carrier that does not serve the number cannot claim it under the new key.
    async with CarrierClient(cu) as c:
        with pytest.raises(errors.PermissionDenied, match=r"^event 1: .*carrier cu") as denied:
            await c.report([LifecycleReport(phone_a, Lifecycle.REISSUED, days_ago(1))])
        assert (denied.value.item, denied.value.position) == ("event", 1)
        with pytest.raises(errors.PermissionDenied, match="not the current carrier"):
            await c.query("sub", [(phone_a, days_ago(1))])
    assert (await stats(reg)).orders_pending == 0
    # ... while its real carrier keeps it, and sees the platform's binding.
    async with CarrierClient(cm) as c:
        (view,) = await c.query("sub-a", [(phone_a, days_ago(500))])
        assert [(v.platform_id, v.pre_tenure, v.active_count) for v in view.platforms] == [
            ("p", False, 1)
        ]
        # 2a. Its REISSUED under the new key revokes the binding published under the old.
        summary = await c.report([LifecycleReport(phone_a, Lifecycle.REISSUED, days_ago(10))])
        assert summary.orders_created == 1

    # 2b. A binding (re)published under the new key is revoked by a REISSUED under the old.
    async with PlatformClient(p) as pc:
        assert await pc.key_id() == new
        await pc.publish([Row(phone_b, "acct-b", days_ago(300))])
    out = await _report_under(cm, old, phone_b, carriers_pb2.LIFECYCLE_KIND_REISSUED, days_ago(10))
    assert out.orders_created == 1
    async with secure_channel(p) as channel:
        events = [e async for e in EventFeed(channel, after_seq=0).events(follow=False)]
    assert sorted((e.kind, e.account_ref) for e in events) == sorted(
        [(EventKind.REVOKE, ref_a), (EventKind.REVOKE, ref_b)]
    )
    # Events name the binding's token under the store key, whatever form its row is in.
    assert {e.key_id for e in events} == {new}
    # The holder's view under the new key shows the revocation under way (delivered above).
    async with CarrierClient(cm) as c:
        (view,) = await c.query("sub-b", [(phone_b, days_ago(10))])
        assert [(v.platform_id, v.pre_tenure, v.open_state) for v in view.platforms] == [
            ("p", True, "DELIVERED")
        ]
    # Reassigned-since agrees under both keys.
    queries = [(phone_a, days_ago(20)), (phone_b, days_ago(20)), (phone_b, days_ago(5))]
    want = [REASSIGNED, REASSIGNED, NOT_REASSIGNED]
    assert await _reassigned_under(p, old, queries) == want
    assert await _reassigned_under(p, new, queries) == want

    final = await stats(reg)
    if during:
        assert final.rekey.state == admin_pb2.REKEY_STATE_RUNNING, "the re-key ended too soon"
        return
    # After: every number is one row, under the new key, exactly where Delta puts it.
    for phone in [phone_a, phone_b, *fillers]:
        t_old = voprf.evaluate_element(secret(reg, old), phone.encode(), voprf.MODE_VOPRF)
        want_token = rekeyed(reg, old, new, t_old)
        rows = reg.registry.db.transact(
            lambda s: list(s.execute(select(NumberRow.key_id, NumberRow.token))),
            write=False,
        )
        assert [k for k, tok in rows if tok in (t_old, want_token)] == [new]


@pytest.mark.parametrize("phase", ["during", "after"])
async def test_rotation_keeps_one_identity_per_number(
    tmp_path: Path, database_url: str, phase: str
) -> None:
    slow = {"rekey_batch_rows": 1, "rekey_pause_seconds": PAUSE} if phase == "during" else {}
    async with running_registry(tmp_path / "data", database_url=database_url, **slow) as reg:
        await _scenarios(reg, during=phase == "during")
