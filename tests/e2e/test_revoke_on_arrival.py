"""A binding published after its number was reissued, bound before the reissue, is the
previous holder's: revoked on arrival (issue 10, finding 2), over the raw RPC, the SDK's
publish and sync, and the command line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from numbind.cli import main as cli_main
from numbind.protocol.bundle import Bundle
from numbind.registry.domain.types import BindingState
from numbind.registry.storage.models import BindingRow
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import (
    EventCause,
    EventFeed,
    EventKind,
    FeedEvent,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Row,
)
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import TokenResult
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc
from sqlalchemy import select

from tests.e2e._story import carrier, days_ago, tokenize

PHONE = "+8613800138000"


def _ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def _request(
    token: TokenResult, accounts: list[tuple[bytes, datetime]], rid: str
) -> platforms_pb2.PublishBindingsRequest:
    return platforms_pb2.PublishBindingsRequest(
        request_id=rid,
        bindings=[
            common_pb2.Binding(
                token=common_pb2.Token(key_id=token.key_id, value=token.token),
                account_ref=ref,
                bound_at=_ts(when),
                kind=common_pb2.BINDING_KIND_LOGIN,
            )
            for ref, when in accounts
        ],
    )


async def _feed(bundle: Bundle) -> list[FeedEvent]:
    async with secure_channel(bundle) as channel:
        return [e async for e in EventFeed(channel, after_seq=0).events(follow=False)]


async def _reissued(cm: Bundle, phone: str, *, issued: float = 300, again: float = 10) -> None:
    async with carrier(cm) as c:
        await c.report(
            [
                LifecycleReport(phone, Lifecycle.ISSUED, days_ago(issued)),
                LifecycleReport(phone, Lifecycle.REISSUED, days_ago(again)),
            ]
        )


async def test_publish_after_reissue_revokes_pre_tenure_bindings_once(
    tmp_path: Path, database_url: str
) -> None:
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        await _reissued(cm, PHONE)
        token = await tokenize(p1, PHONE)
        accounts = [(b"old-holder", days_ago(60)), (b"new-holder", days_ago(5))]
        async with secure_channel(p1) as channel:
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            first = await stub.PublishBindings(_request(token, accounts, "r1"))
            assert (first.inserted, first.revoked_on_arrival) == (2, 1)
            # Same request id: the same answer, no second order.
            retry = await stub.PublishBindings(_request(token, accounts, "r1"))
            assert retry == first
            # Same content under a new id: already revoking, nothing new.
            again = await stub.PublishBindings(_request(token, accounts, uuid.uuid4().hex))
            assert (again.unchanged, again.revoked_on_arrival) == (2, 0)
        events = await _feed(p1)
        assert len(events) == 1
        (event,) = events
        assert event.account_ref == b"old-holder"
        assert (event.kind, event.cause) == (EventKind.REVOKE, EventCause.REISSUED)
        assert event.tenure_start is not None
        assert abs((event.tenure_start - days_ago(10)).total_seconds()) < 1


async def test_a_binding_withdrawn_while_revoking_and_published_again_is_not_ordered_twice(
    tmp_path: Path, database_url: str
) -> None:
    """Withdrawn while its order was out, the binding kept that order open; published again
    it was revoked on arrival a second time, an order per republish. Now it is revoking
    again under its first order, and that order's ack revokes it."""
    async with running_registry(tmp_path / "data", database_url=database_url) as reg:
        cm, p1 = reg.add_carrier("cm"), reg.add_platform("p1")
        await _reissued(cm, PHONE)
        token = await tokenize(p1, PHONE)
        old = [(b"old-holder", days_ago(60))]
        key = common_pb2.BindingKey(
            token=common_pb2.Token(key_id=token.key_id, value=token.token),
            account_ref=b"old-holder",
        )
        async with secure_channel(p1) as channel:
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            first = await stub.PublishBindings(_request(token, old, uuid.uuid4().hex))
            assert first.revoked_on_arrival == 1
            for _ in range(2):
                gone = await stub.WithdrawBindings(
                    platforms_pb2.WithdrawBindingsRequest(
                        request_id=uuid.uuid4().hex, bindings=[key]
                    )
                )
                assert gone.withdrawn == 1
                back = await stub.PublishBindings(_request(token, old, uuid.uuid4().hex))
                assert back.revoked_on_arrival == 1
            (order,) = await _feed(p1)  # the first order, still to be acked
            acked = await stub.AckEvents(
                platforms_pb2.AckEventsRequest(
                    request_id=uuid.uuid4().hex,
                    acks=[
                        platforms_pb2.Ack(
                            order_id=order.order_id, outcome=platforms_pb2.ACK_OUTCOME_UNBOUND
                        )
                    ],
                )
            )
            assert acked.recorded == 1
        states = reg.registry.db.transact(
            lambda s: s.execute(select(BindingRow.account_ref, BindingRow.state)).all(),
            write=False,
        )
        assert [tuple(r) for r in states] == [(b"old-holder", int(BindingState.REVOKED))]


async def test_sdk_publish_and_sync_report_revoked_on_arrival(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm, p1 = registry.add_carrier("cm"), registry.add_platform("p1")
    phones = ["13800138000", "13800138001", "13800138002"]
    for p in phones:
        await _reissued(cm, p)
    async with PlatformClient(p1) as client:
        published = await client.publish([Row(phones[0], "a0", days_ago(60), Kind.LOGIN)])
        assert (published.inserted, published.revoked_on_arrival) == (1, 1)
        synced = await client.sync(
            [
                Row(phones[0], "a0", days_ago(60), Kind.LOGIN),
                Row(phones[1], "a1", days_ago(50), Kind.LOGIN),
                Row(phones[1], "a1b", days_ago(2), Kind.LOGIN),
            ]
        )
        assert (synced.added, synced.revoked_on_arrival) == (2, 1)
    path = tmp_path / "late.csv"
    path.write_text(
        f"phone,account_id,bound_at,kind\n{phones[2]},a2,{days_ago(40).isoformat()},LOGIN\n"
    )
    bundle_dir = str(p1.directory)
    capsys.readouterr()
    code = await asyncio.to_thread(
        cli_main,
        ["platform", "publish", "--bundle", bundle_dir, "--file", str(path), "--no-progress"],
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "1 revoked on arrival" in text
    assert len(await _feed(p1)) == 3
