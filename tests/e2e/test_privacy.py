"""Privacy invariant: after a full run (tokenise, publish, lifecycle, query, revoke, feed,
acks, reassigned checks), no raw phone number appears in the database files, the registry's
logs, or any registry response."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from numbind.registry.logs import JsonFormatter
from numbind.registry.testing import running_registry
from numbind.sdk import AckOutcome, EventFeed, Lifecycle, LifecycleReport, Scope
from numbind.sdk.channel import secure_channel
from numbind.v1 import admin_pb2, admin_pb2_grpc

from tests.e2e._story import carrier, days_ago, publish, tokenize

NUMBERS = ["+8613800138000", "+8613912345678", "+8618611112222"]


def _forms(e164: str) -> list[bytes]:
    national = e164.removeprefix("+86")
    return [e164.encode(), e164[1:].encode(), national.encode(), national.encode("utf-16-le")]


async def test_no_number_in_db_logs_or_responses(tmp_path: Path) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    responses: list[bytes] = []
    try:
        async with running_registry(tmp_path / "data") as reg:
            cm = reg.add_carrier("cm")
            plats = [reg.add_platform(f"p{i}") for i in range(2)]
            for i, phone in enumerate(NUMBERS):
                token = await tokenize(plats[0], phone)
                for p in plats:
                    r = await publish(p, token, [(f"acct-{i}".encode(), days_ago(90))])
                    responses.append(r.SerializeToString())
            async with carrier(cm) as c:
                summary = await c.report(
                    [LifecycleReport(NUMBERS[0], Lifecycle.REISSUED, days_ago(5))]
                    + [LifecycleReport(n, Lifecycle.ISSUED, days_ago(30)) for n in NUMBERS[1:]]
                )
                views = await c.query("sub", [(n, days_ago(30)) for n in NUMBERS[1:]])
                rid, _ = await c.revoke("sub", NUMBERS[1], days_ago(30), Scope.ALL_PRE_TENURE)
                # (the SDK adds the e164 it tokenised; the registry sent only the rest)
                responses.append(repr([(v.tenure_start, v.platforms) for v in views]).encode())
                responses.append(repr(await c.revocation(rid)).encode())
                responses.append(repr(summary).encode())
                responses.append(
                    repr(await c.check_reassigned([(NUMBERS[0], days_ago(9))])).encode()
                )
            for p in plats:
                async with secure_channel(p) as channel:
                    feed = EventFeed(channel, after_seq=0)
                    async for event in feed.events(follow=False):
                        responses.append(repr(event).encode())
                        await event.ack(AckOutcome.UNBOUND)
            async with secure_channel(reg.admin_bundle) as channel:
                stats = await admin_pb2_grpc.AdminStub(channel).GetStats(
                    admin_pb2.GetStatsRequest()
                )
                responses.append(stats.SerializeToString())
            assert stats.orders_done == 4  # 2 reissue + 2 holder revocations, all acked
            key = reg.registry.keys.active()
            assert key.secret is not None
            secrets = [key.secret, key.secret.hex().encode()]
            # Read while running: the WAL holds the latest writes until a checkpoint.
            blobs = {f.name: f.read_bytes() for f in (tmp_path / "data").glob("registry.db*")}
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    blobs["logs"] = buf.getvalue().encode()
    blobs["responses"] = b"\n".join(responses)
    assert len(blobs["logs"]) > 0 and len(blobs["registry.db"]) > 0
    for name, blob in blobs.items():
        # The token key lives only in its 0600 file, never in the store or a log.
        assert not any(secret in blob for secret in secrets), f"token key found in {name}"
        for number in NUMBERS:
            for form in _forms(number):
                assert form not in blob, f"{number} found in {name}"
