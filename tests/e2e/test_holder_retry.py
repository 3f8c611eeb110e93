"""What a carrier app needs after 一键解绑, over real gRPC: the order deadline up front, each
platform's order ids and deadline in the progress, and a retry that asks only the apps it
names — the overdue ones again, never one that is still within its deadline."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import running_registry
from numbind.sdk import (
    AckOutcome,
    EventFeed,
    FeedEvent,
    InvalidRequest,
    Lifecycle,
    LifecycleReport,
    Scope,
)
from numbind.sdk.channel import secure_channel
from numbind.sdk.model import order_reference

from tests.e2e._story import carrier, days_ago, publish, take, tokenize

PHONE = "+8613800138000"
SUBJECT = "sub-1"


async def ack(bundle: Bundle, cursor: Path, events: list[FeedEvent], outcome: AckOutcome) -> None:
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor)
        reason = "account has an open loan" if outcome == AckOutcome.REJECTED else ""
        await feed.ack([(e, outcome, reason) for e in events])


async def test_progress_carries_order_ids_deadlines_and_retries_ask_again(
    tmp_path: Path, database_url: str
) -> None:
    async with running_registry(
        tmp_path / "data", database_url=database_url, order_deadline_seconds=1.5
    ) as reg:
        cm = reg.add_carrier("cm")
        drive, loan, travel = (reg.add_platform(n) for n in ("drive", "loan", "travel"))
        token = await tokenize(drive, PHONE)
        for p in (drive, loan, travel):
            await publish(p, token, [(b"old", days_ago(300))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
            # Nothing happened yet; the carrier can already promise how long apps have.
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert view.order_deadline == timedelta(seconds=1.5)

            rid, orders = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
            assert orders == 3
            drive_events = await take(drive, tmp_path / "cd", 1)
            loan_events = await take(loan, tmp_path / "cl", 1)
            progress = {p.platform_id: p for p in await c.revocation(rid)}
            # The ids the feeds carry are the ids the holder's view names.
            assert progress["drive"].order_ids == (drive_events[0].order_id,)
            assert progress["loan"].reference == order_reference(loan_events[0].order_id)
            assert progress["loan"].reference == loan_events[0].reference
            assert all(p.deadline is not None for p in progress.values())

            # Asked again at once: every order is still within its deadline, so nothing new.
            again, n = await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE, ["travel"]
            )
            assert n == 0 and again != rid

            await ack(drive, tmp_path / "cd", drive_events, AckOutcome.UNBOUND)
            await ack(loan, tmp_path / "cl", loan_events, AckOutcome.REJECTED)
            await asyncio.sleep(1.7)  # travel is offline: its order goes overdue
            states = {p.platform_id: p.state for p in await c.revocation(rid)}
            assert states == {"drive": "DONE", "loan": "REJECTED", "travel": "OVERDUE"}

            # The retry names the overdue app only; the refusing one is not asked again.
            retry, n = await c.revoke(
                SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE, ["travel"]
            )
            assert n == 1
            (again_progress,) = await c.revocation(retry)
            assert (again_progress.platform_id, again_progress.state) == ("travel", "PENDING")
            # Travel comes back online: two orders for the same binding; either ack settles
            # it and the other is answered as already gone.
            first, second = await take(travel, tmp_path / "ct", 2)
            assert first.revocation_id == rid and second.revocation_id == retry
            await ack(travel, tmp_path / "ct", [second], AckOutcome.UNBOUND)
            await ack(travel, tmp_path / "ct", [first], AckOutcome.ALREADY_GONE)
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [(p.platform_id, p.pre_tenure) for p in view.platforms] == [("loan", True)]


async def test_a_refusal_while_a_retry_is_open_leaves_the_retry_to_decide(
    tmp_path: Path,
) -> None:
    async with running_registry(tmp_path / "data", order_deadline_seconds=1.0) as reg:
        cm = reg.add_carrier("cm")
        shop = reg.add_platform("shop")
        token = await tokenize(shop, PHONE)
        await publish(shop, token, [(b"old", days_ago(300))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
            rid, _ = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
            await asyncio.sleep(1.2)
            retry, n = await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE)
            assert n == 1
            first, second = await take(shop, tmp_path / "cs", 2)
            await ack(shop, tmp_path / "cs", [first], AckOutcome.REJECTED)
            # Still being revoked: the open retry is not undone by the older refusal ...
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [p.open_revocation for p in view.platforms] == [retry]
            await ack(shop, tmp_path / "cs", [second], AckOutcome.UNBOUND)
            # ... and its UNBOUND revokes the binding.
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert view.platforms == []
            states = {r: (await c.revocation(r))[0].state for r in (rid, retry)}
            assert states == {rid: "REJECTED", retry: "DONE"}


async def test_platform_ids_with_scope_all_is_refused_naming_the_field(tmp_path: Path) -> None:
    async with running_registry(tmp_path / "data") as reg:
        cm = reg.add_carrier("cm")
        shop = reg.add_platform("shop")
        token = await tokenize(shop, PHONE)
        await publish(shop, token, [(b"old", days_ago(300))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(30))])
            with pytest.raises(InvalidRequest, match="platform_ids: not allowed with scope ALL"):
                await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL, ["shop"])
            with pytest.raises(Exception, match=r"platform_ids\[0\]: no platform 'nope'"):
                await c.revoke(SUBJECT, PHONE, days_ago(30), Scope.ALL_PRE_TENURE, ["nope"])
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(30))])
            assert [p.open_revocation for p in view.platforms] == [""]


async def test_a_query_met_by_a_restarting_registry_is_asked_again_with_fresh_attestations(
    tmp_path: Path,
) -> None:
    # Each attestation is single-use, so the query was never retried: a registry restarting
    # under it (UNAVAILABLE) reached the holder. Now each try signs its own.
    async with running_registry(tmp_path / "data") as reg:
        cm, drive = reg.add_carrier("cm"), reg.add_platform("drive")
        token = await tokenize(drive, PHONE)
        await publish(drive, token, [(b"acct", days_ago(300))])
        async with carrier(cm) as c:
            await c.report([LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(400))])
            real = c._holders.QueryBindings
            sent: list[bytes] = []

            def restarting(request: Any, **kwargs: Any) -> Any:
                sent.append(request.attestations[0].signature)
                if len(sent) == 1:
                    raise grpc.aio.AioRpcError(
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.aio.Metadata(),
                        grpc.aio.Metadata(),
                        details="the registry is stopping",
                    )
                return real(request, **kwargs)

            c._holders.QueryBindings = restarting  # type: ignore[assignment]
            (view,) = await c.query(SUBJECT, [(PHONE, days_ago(400))])
    assert [p.platform_id for p in view.platforms] == ["drive"]
    assert len(sent) == 2 and sent[0] != sent[1]  # the second try signed anew
