"""Syncs that cannot wipe a platform, and that do not republish what a holder had revoked:
the SDK and `numbind platform sync` against a real registry."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from numbind.cli import main as cli_main
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    AckOutcome,
    CarrierClient,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Record,
    Row,
    SyncAborted,
)
from numbind.sdk.sync_options import default_withdraw_limit, refusal_text

from tests.tokens import random_token

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
# More bindings than the 1,000 floor, and more than twice it, so that the 10 %-or-1,000
# rule (not the half-or-100 one) is the limit that bites.
BIG = 2_200


def phone(i: int) -> str:
    return f"138{i:08d}"


def rows(n: int, start: int = 0) -> list[Row]:
    return [
        Row(phone(i), f"acct-{i}", T0 + timedelta(minutes=i), Kind.LOGIN)
        for i in range(start, start + n)
    ]


def write_csv(path: Path, items: list[Row]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["phone", "account_id", "bound_at", "kind"])
        for r in items:
            out.writerow([r.phone, r.account_id, r.bound_at.isoformat(), r.kind.name])
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def count(client: PlatformClient) -> int:
    return sum(b.count for b in (await client.digest(0)).values())


def test_the_default_limit_is_ten_percent_or_a_thousand_and_at_most_half_or_a_hundred() -> None:
    # 10 % or 1,000, whichever is larger ...
    assert default_withdraw_limit(2_000) == 1_000
    assert default_withdraw_limit(10_009) == 1_000
    assert default_withdraw_limit(10_010) == 1_001
    assert default_withdraw_limit(50_000) == 5_000
    assert default_withdraw_limit(100_006) == 10_000
    # ... but never more than half of the bindings, unless that is 100 or fewer.
    assert default_withdraw_limit(997) == 498  # 990 of 997 is refused
    assert default_withdraw_limit(1_000) == 500  # 600 of 1,000 is refused
    assert default_withdraw_limit(100) == 100  # 60 of 100 goes through
    assert default_withdraw_limit(0) == 100
    assert refusal_text(990, 997, 498) == (
        "the sync would withdraw 990 of the registry's 997 bindings (99.3%), more than the "
        "limit of 498 (half of the registry's bindings or 100, whichever is larger)"
    )
    assert refusal_text(5_001, 50_000, 5_000).endswith(
        "more than the limit of 5,000 (10 % of the registry's bindings or 1,000, whichever "
        "is larger)"
    )


async def test_sdk_sync_refuses_to_withdraw_most_of_a_platform(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(rows(BIG))
        # A truncated export: 50 of 2,200 rows. 2,150 withdrawals > max(220, 1,000).
        with pytest.raises(SyncAborted) as refused:
            await client.sync(rows(50))
        err = refused.value
        assert (err.withdraw, err.server_bindings, err.limit) == (2_150, BIG, 1_000)
        assert "would withdraw 2,150 of the registry's 2,200 bindings" in err.message
        assert "max_withdraw=2150 (or force=True)" in err.message
        assert await count(client) == BIG  # nothing changed

        # A dry run applies the same check and says so, changing nothing either.
        plan = await client.sync(rows(50), dry_run=True)
        assert plan.withdrawn == 2_150 and plan.withdraw_limit == 1_000
        assert "more than the limit of 1,000" in plan.refusal
        assert await count(client) == BIG

        # Exactly at the limit is allowed; an explicit max_withdraw or force lets more go.
        at_limit = await client.sync(rows(1_200))
        assert (at_limit.withdrawn, at_limit.refusal) == (1_000, "")
        with pytest.raises(SyncAborted, match=r"limit of 10 \(max_withdraw\)"):
            await client.sync(rows(50), max_withdraw=10)
        with pytest.raises(ValueError, match="max_withdraw and force"):
            await client.sync(rows(50), max_withdraw=10, force=True)
        assert (await client.sync(rows(1_150), max_withdraw=50)).withdrawn == 50
        forced = await client.sync([], force=True)
        assert forced.withdrawn == 1_150 and forced.withdraw_limit is None
        assert await count(client) == 0


async def test_sdk_sync_refuses_to_withdraw_most_of_a_small_platform(
    registry: RunningRegistry,
) -> None:
    """The issue's own case: a 10-row file against 997 bindings withdraws 990, which the
    10 %-or-1,000 rule alone would allow; more than half and more than 100 is refused."""
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(rows(997))
        ten = rows(7) + rows(3, start=5_000)  # 7 of them held, 3 new
        with pytest.raises(SyncAborted) as refused:
            await client.sync(ten)
        err = refused.value
        assert (err.withdraw, err.server_bindings, err.limit) == (990, 997, 498)
        assert "would withdraw 990 of the registry's 997 bindings (99.3%)" in err.message
        assert "limit of 498 (half of the registry's bindings or 100" in err.message
        assert "max_withdraw=990 (or force=True)" in err.message
        plan = await client.sync(ten, dry_run=True)
        assert (plan.withdrawn, plan.added, plan.withdraw_limit) == (990, 3, 498)
        assert "limit of 498 (half" in plan.refusal
        assert await count(client) == 997  # nothing changed

        # 600 of 1,000 is refused; 500 of 1,000 (half, not more) goes through.
        await client.publish(rows(3, start=997))
        assert await count(client) == 1_000
        with pytest.raises(SyncAborted) as refused:
            await client.sync(rows(400))
        assert (refused.value.withdraw, refused.value.limit) == (600, 500)
        assert await count(client) == 1_000
        assert (await client.sync(rows(500))).withdrawn == 500

        # 60 of 100: more than half, but not more than 100.
        assert (await client.sync(rows(100), max_withdraw=400)).withdrawn == 400
        assert await count(client) == 100
        sixty = await client.sync(rows(40))
        assert (sixty.withdrawn, sixty.withdraw_limit, sixty.refusal) == (60, 100, "")
        assert await count(client) == 40


async def test_sdk_sync_of_a_large_platform_withdraws_ten_percent_and_no_more(
    registry: RunningRegistry,
) -> None:
    """50,000 bindings: 5,000 withdrawals (10 %) go through, 5,001 do not. Records carry
    ready tokens, so no tokenising is needed at this size."""
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        key_id = await client.key_id()
        records = [
            Record(random_token(), key_id, b"ref-%d" % i, T0 + timedelta(seconds=i), Kind.LOGIN)
            for i in range(50_000)
        ]
        await client.publish_records(records)
        with pytest.raises(SyncAborted) as refused:
            await client.sync_records(records[:44_999])
        err = refused.value
        assert (err.withdraw, err.server_bindings, err.limit) == (5_001, 50_000, 5_000)
        assert "limit of 5,000 (10 % of the registry's bindings or 1,000" in err.message
        assert await count(client) == 50_000
        summary = await client.sync_records(records[:45_000])
        assert (summary.withdrawn, summary.withdraw_limit, summary.refusal) == (5_000, 5_000, "")
        assert summary.converged is True and await count(client) == 45_000


async def test_cli_sync_refusal_and_dry_run_name_the_numbers_and_the_flags(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(rows(BIG))
    path = write_csv(tmp_path / "truncated.csv", rows(50))
    base = ["platform", "sync", "--bundle", str(bundle.directory), "--file", str(path)]

    code, out, err = await cli(capsys, *base)
    assert code == 1 and out == ""
    assert "would withdraw 2,150 of the registry's 2,200 bindings (97.7%)" in err
    assert "more than the limit of 1,000 (10 % of the registry's bindings or 1,000" in err
    assert "pass --max-withdraw 2150 (or --force)" in err

    code, out, err = await cli(capsys, *base, "--dry-run")
    assert code == 1
    assert "dry run: compared 50 rows" in out and "would withdraw 2,150" in out
    assert "would refuse:" in err and "--max-withdraw 2150 (or --force)" in err

    code, out, _ = await cli(capsys, *base, "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 1 and plan["ok"] is False and plan["withdrawn"] == 2_150
    assert plan["withdraw_limit"] == 1_000 and "limit of 1,000" in plan["refusal"]

    code, _, err = await cli(capsys, *base, "--max-withdraw", "40")
    assert code == 1 and "limit of 40 (--max-withdraw)" in err
    async with PlatformClient(bundle) as client:
        assert await count(client) == BIG  # every refusal changed nothing

    code, out, err = await cli(capsys, *base, "--max-withdraw", "2,150", "--json")
    assert code == 0, err
    assert json.loads(out)["withdrawn"] == 2_150
    code, _, err = await cli(capsys, *base, "--max-withdraw", "5", "--force")
    assert code == 2 and "not allowed with argument" in err


async def test_cli_sync_refuses_to_empty_a_small_platform(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`numbind platform sync` with a 10-row file against 997 bindings: refused (990 is
    under 1,000 but more than half), naming the numbers, the rule and the flags."""
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(rows(997))
    path = write_csv(tmp_path / "ten.csv", rows(7) + rows(3, start=5_000))
    base = ["platform", "sync", "--bundle", str(bundle.directory), "--file", str(path)]

    code, out, err = await cli(capsys, *base)
    assert code == 1 and out == ""
    assert "would withdraw 990 of the registry's 997 bindings (99.3%)" in err
    assert "more than the limit of 498 (half of the registry's bindings or 100" in err
    assert "pass --max-withdraw 990 (or --force)" in err

    code, out, err = await cli(capsys, *base, "--dry-run")
    assert code == 1 and "would withdraw 990" in out
    assert "would refuse:" in err and "limit of 498" in err
    async with PlatformClient(bundle) as client:
        assert await count(client) == 997  # every refusal changed nothing

    code, out, err = await cli(capsys, *base, "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["withdrawn"] == 990
    async with PlatformClient(bundle) as client:
        assert await count(client) == 10


async def revoke_by_reissue(registry: RunningRegistry, client: PlatformClient, number: str) -> None:
    """The carrier reports the number reissued; the platform acks the order UNBOUND."""
    cm = registry.add_carrier("cm")
    async with CarrierClient(cm) as carrier:
        summary = await carrier.report(
            [LifecycleReport(number, Lifecycle.REISSUED, datetime.now(UTC) - timedelta(days=1))]
        )
    assert summary.orders_created == 1
    async for event in client.events(follow=False):
        await event.ack(AckOutcome.UNBOUND)


async def test_sdk_sync_skips_a_revoked_binding_unless_bound_anew(
    registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = registry.add_platform("acme")
    export = rows(5)
    async with PlatformClient(bundle) as client:
        await client.publish(export)
        await revoke_by_reissue(registry, client, export[2].phone)
        assert await count(client) == 4

        # The export still holds the revoked binding: it is skipped and said so.
        caplog.set_level(logging.WARNING, logger="numbind.sdk")
        plan = await client.sync(export, dry_run=True)
        assert (plan.revoked_skipped, plan.revoked_positions, plan.added) == (1, [3], 0)
        summary = await client.sync(export)
        assert (summary.revoked_skipped, summary.revoked_positions) == (1, [3])
        assert (summary.published, summary.withdrawn, summary.converged) == (0, 0, True)
        assert "skipped 1 snapshot row that the registry revoked" in caplog.text
        assert export[2].phone not in caplog.text
        # A plain publish of the stale row leaves it revoked and counts it.
        assert (await client.publish([export[2]])).revoked == 1
        assert await count(client) == 4

        # The account bound the number again after the revocation: a new binding.
        again = Row(export[2].phone, export[2].account_id, datetime.now(UTC), Kind.LOGIN)
        rebound = await client.sync([*export[:2], again, *export[3:]])
        assert (rebound.revoked_skipped, rebound.added, rebound.converged) == (0, 1, True)
        assert await count(client) == 5


async def test_cli_sync_warns_about_revoked_rows_by_file_line(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    export = rows(6)
    async with PlatformClient(bundle) as client:
        await client.publish(export)
        await revoke_by_reissue(registry, client, export[4].phone)
    path = write_csv(tmp_path / "export.csv", export)
    code, out, err = await cli(
        capsys, "platform", "sync", "--bundle", str(bundle.directory), "--file", str(path)
    )
    assert code == 0, err
    assert "skipped 1 revoked" in out
    # Line 6: the header is line 1, the fifth row line 6.
    assert "1 row (line 6) is a binding the registry revoked" in err
    assert "Remove that number from your export" in err
    assert export[4].phone not in err and export[4].phone[3:] not in err

    code, out, err = await cli(
        capsys, "platform", "publish", "--bundle", str(bundle.directory), "--file", str(path)
    )
    assert code == 0 and "1 left revoked" in out
    assert "1 row is a binding the registry revoked" in err and "left revoked" in err
