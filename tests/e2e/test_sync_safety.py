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
    Row,
    SyncAborted,
)
from numbind.sdk.sync import default_withdraw_limit

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
BIG = 1_100  # more bindings than the 1,000 floor, so the default limit bites


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


def test_the_default_limit_is_ten_percent_or_a_thousand_whichever_is_larger() -> None:
    assert default_withdraw_limit(0) == 1_000
    assert default_withdraw_limit(997) == 1_000
    assert default_withdraw_limit(10_009) == 1_000
    assert default_withdraw_limit(10_010) == 1_001
    assert default_withdraw_limit(100_006) == 10_000


async def test_sdk_sync_refuses_to_withdraw_most_of_a_platform(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(rows(BIG))
        # A truncated export: 50 of 1,100 rows. 1,050 withdrawals > max(110, 1,000).
        with pytest.raises(SyncAborted) as refused:
            await client.sync(rows(50))
        err = refused.value
        assert (err.withdraw, err.server_bindings, err.limit) == (1_050, BIG, 1_000)
        assert "would withdraw 1,050 of the registry's 1,100 bindings" in err.message
        assert "max_withdraw=1050 (or force=True)" in err.message
        assert await count(client) == BIG  # nothing changed

        # A dry run applies the same check and says so, changing nothing either.
        plan = await client.sync(rows(50), dry_run=True)
        assert plan.withdrawn == 1_050 and plan.withdraw_limit == 1_000
        assert "more than the limit of 1,000" in plan.refusal
        assert await count(client) == BIG

        # Exactly at the limit is allowed; an explicit max_withdraw or force lets more go.
        at_limit = await client.sync(rows(100))
        assert (at_limit.withdrawn, at_limit.refusal) == (1_000, "")
        with pytest.raises(SyncAborted, match=r"limit of 10 \(max_withdraw\)"):
            await client.sync(rows(50), max_withdraw=10)
        with pytest.raises(ValueError, match="max_withdraw and force"):
            await client.sync(rows(50), max_withdraw=10, force=True)
        assert (await client.sync(rows(50), max_withdraw=50)).withdrawn == 50
        forced = await client.sync([], force=True)
        assert forced.withdrawn == 50 and forced.withdraw_limit is None
        assert await count(client) == 0


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
    assert "would withdraw 1,050 of the registry's 1,100 bindings (95.5%)" in err
    assert "more than the limit of 1,000 (10 % of the registry's bindings or 1,000" in err
    assert "pass --max-withdraw 1050 (or --force)" in err

    code, out, err = await cli(capsys, *base, "--dry-run")
    assert code == 1
    assert "dry run: compared 50 rows" in out and "would withdraw 1,050" in out
    assert "would refuse:" in err and "--max-withdraw 1050 (or --force)" in err

    code, out, _ = await cli(capsys, *base, "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 1 and plan["ok"] is False and plan["withdrawn"] == 1_050
    assert plan["withdraw_limit"] == 1_000 and "limit of 1,000" in plan["refusal"]

    code, _, err = await cli(capsys, *base, "--max-withdraw", "40")
    assert code == 1 and "limit of 40 (--max-withdraw)" in err
    async with PlatformClient(bundle) as client:
        assert await count(client) == BIG  # every refusal changed nothing

    code, out, err = await cli(capsys, *base, "--max-withdraw", "1,050", "--json")
    assert code == 0, err
    assert json.loads(out)["withdrawn"] == 1_050
    code, _, err = await cli(capsys, *base, "--max-withdraw", "5", "--force")
    assert code == 2 and "not allowed with argument" in err


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
