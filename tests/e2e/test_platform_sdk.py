"""The platform SDK and `numbind platform` against a real registry over mTLS."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from numbind.cli import main as cli_main
from numbind.protocol.bundle import Bundle
from numbind.protocol.digest import bucket_of
from numbind.registry.config import QuotaSettings
from numbind.registry.testing import RunningRegistry, running_registry
from numbind.sdk import Kind, PlatformClient, Record, Row, SyncAborted, errors
from numbind.sdk.channel import secure_channel
from numbind.sdk.phone import InvalidNumber
from numbind.sdk.progress import Progress
from numbind.sdk.tokenizer import Tokenizer

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _phone(i: int) -> str:
    return f"138{i:08d}"


def _rows(n: int, start: int = 0) -> list[Row]:
    return [
        Row(_phone(i), f"acct-{i}", T0 + timedelta(minutes=i), Kind(1 + i % 5))
        for i in range(start, start + n)
    ]


async def _buckets_of(bundle: Bundle, phones: list[str], bits: int) -> set[int]:
    """Independently of the SDK under test: tokenise and take the top bits."""
    async with secure_channel(bundle) as channel:
        tokenizer = Tokenizer(channel)
        try:
            return {bucket_of(r.token, bits) for r in await tokenizer.tokenize(phones)}
        finally:
            tokenizer.close()


async def test_publish_republish_and_withdraw(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    reports: list[Progress] = []
    rows = _rows(60)
    async with PlatformClient(bundle, batch_size=25, progress=reports.append) as client:
        first = await client.publish(rows, total=len(rows))
        assert (first.rows, first.inserted, first.updated, first.unchanged) == (60, 60, 0, 0)
        assert first.batches == 3
        assert reports[-1].done == reports[-1].total == 60 and reports[-1].rate > 0

        again = await client.publish(iter(rows))
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 60)

        moved = [Row(rows[0].phone, rows[0].account_id, T0 - timedelta(days=1), Kind.PAYMENT)]
        changed = await client.publish(moved)
        assert (changed.inserted, changed.updated) == (0, 1)

        gone = await client.withdraw(rows[:5])
        assert (gone.withdrawn, gone.not_found) == (5, 0)
        twice = await client.withdraw(rows[:5])
        assert (twice.withdrawn, twice.not_found) == (0, 5)

        digest = await client.digest(0)
        assert digest[0].count == 55
        listed = [r async for r in client.list_bucket(0, 0, page_size=7)]
        assert len(listed) == 55
        refs = {client.account_ref(r.account_id): r for r in rows[5:]}
        assert {r.account_ref for r in listed} == set(refs)
        for record in listed:
            row = refs[record.account_ref]
            assert (record.bound_at, record.kind) == (row.bound_at, row.kind)
            assert record.key_id == await client.key_id()

        # The lower-level path: records as listed publish back unchanged.
        back = await client.publish_records(listed)
        assert (back.inserted, back.updated, back.unchanged) == (0, 0, 55)
    assert (bundle.directory / "account-ref.key").exists()


async def test_sync_converges_and_lists_only_differing_buckets(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bundle = registry.add_platform("acme")
    bits = 8
    base = _rows(400)
    work = _mkdir(tmp_path / "work")
    async with PlatformClient(bundle) as client:
        await client.publish(base)

        removed = base[10:13]
        changed = [
            Row(base[20].phone, base[20].account_id, T0 + timedelta(days=3), base[20].kind),
            Row(base[21].phone, base[21].account_id, base[21].bound_at, Kind.OTHER),
        ]
        if changed[1].kind == base[21].kind:
            pytest.fail("test data: the change must change the kind")
        added = _rows(4, start=1000)
        # A number moved to another account of the same user: one withdraw + one publish.
        moved = Row(base[30].phone, "acct-new-30", base[30].bound_at, base[30].kind)
        keep = [r for i, r in enumerate(base) if i not in (10, 11, 12, 20, 21, 30)]
        snapshot = [*keep, *changed, *added, moved]

        touched = [r.phone for r in (*removed, *changed, *added, moved)]
        expected = await _buckets_of(bundle, touched, bits)

        plan = await client.sync(iter(snapshot), bucket_bits=bits, dry_run=True, work_dir=work)
        assert (plan.added, plan.changed, plan.withdrawn) == (5, 2, 4)
        assert plan.converged is None

        summary = await client.sync(iter(snapshot), bucket_bits=bits, work_dir=work)
        assert summary.rows == summary.bindings == len(snapshot)
        assert summary.server_bindings == 400
        assert summary.buckets_total == 256
        assert summary.buckets_listed == summary.buckets_differing == len(expected)
        assert summary.buckets_listed < summary.buckets_total
        assert (summary.added, summary.changed, summary.withdrawn) == (5, 2, 4)
        assert summary.published == 7
        assert summary.converged is True
        assert _listdir(work) == []  # the scratch file is gone

        # Digest equality, checked without the SDK's own verdict: the registry holds the
        # snapshot exactly.
        listed = [r async for r in client.list_bucket(0, 0)]
        want = {(client.account_ref(r.account_id), r.bound_at, r.kind) for r in snapshot}
        assert {(r.account_ref, r.bound_at, r.kind) for r in listed} == want

        # Nothing changed: nothing listed, nothing moved. Default bucket bits from the size.
        quiet = await client.sync(snapshot)
        assert quiet.bucket_bits == 1  # 400 rows / 256 a bucket
        assert (quiet.buckets_differing, quiet.buckets_listed, quiet.published) == (0, 0, 0)
        assert quiet.withdrawn == 0 and quiet.converged is True

        # An empty snapshot withdraws everything (the caller's list is the truth), unless
        # that is more than the caller allows, or, by default, more than half of the
        # platform's bindings (and more than 100): then only force=True empties it.
        with pytest.raises(SyncAborted, match=r"more than the limit of 5 \(max_withdraw\)"):
            await client.sync([], max_withdraw=5)
        with pytest.raises(SyncAborted, match=r"limit of 200 \(half of the registry's"):
            await client.sync([])
        assert (await client.digest(0))[0].count == len(snapshot)
        empty = await client.sync([], force=True)
        assert empty.withdrawn == len(snapshot)
        assert (await client.digest(0)) == {}


async def test_sync_records_path(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(_rows(50))
        records = [r async for r in client.list_bucket(0, 0)]
        summary = await client.sync_records(records[:-2], bucket_bits=4)
        assert (summary.withdrawn, summary.published, summary.converged) == (2, 0, True)


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _listdir(path: Path) -> list[Path]:
    return list(path.iterdir())


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone", "account_id", "bound_at", "kind"])
        writer.writerows(rows)
    return path


def _csv_rows(n: int) -> list[list[str]]:
    kinds = ["login", "RECOVERY", "Payment", "notification", "other"]
    return [
        [_phone(i), f"acct-{i}", (T0 + timedelta(seconds=i)).isoformat(), kinds[i % 5]]
        for i in range(n)
    ]


async def _cli(*argv: str) -> int:
    # main() runs its own event loop; the registry keeps serving on this one.
    return await asyncio.to_thread(cli_main, list(argv))


async def test_cli_publish_json_summary(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    path = _csv(tmp_path / "bindings.csv", _csv_rows(30))
    code = await _cli(
        "platform", "publish", "--bundle", str(bundle.directory), "--file", str(path), "--json"
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["ok"] is True
    assert (summary["rows"], summary["inserted"], summary["rejected"]) == (30, 30, 0)
    assert summary["reject_file"] is None

    # Re-publishing is idempotent; JSON Lines with the same keys works the same.
    jsonl = tmp_path / "bindings.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps(dict(zip(("phone", "account_id", "bound_at", "kind"), r, strict=True)))
            + "\n"
            for r in _csv_rows(30)
        )
    )
    code = await _cli(
        "platform", "publish", "--bundle", str(bundle.directory), "--file", str(jsonl), "--json"
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and (summary["inserted"], summary["unchanged"]) == (0, 30)


async def test_cli_bad_row_fails_the_file_and_names_the_line(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    rows = _csv_rows(20)
    rows[15][0] = "1380000"  # line 17: too short to be a number
    rows[3][2] = "2024-03-01T08:00:00"  # line 5: no offset
    path = _csv(tmp_path / "bindings.csv", rows)
    code = await _cli(
        "platform", "publish", "--bundle", str(bundle.directory), "--file", str(path), "--json"
    )
    out = capsys.readouterr()
    assert code == 1
    assert "line 17: phone: not a valid number" in out.err
    assert "line 5: bound_at: no UTC offset" in out.err
    assert "1380000" not in out.err and "1380000" not in out.out
    report = json.loads(out.out)
    assert report["ok"] is False and report["invalid_rows"] == 2
    assert [e["line"] for e in report["errors"]] == [5, 17]
    async with PlatformClient(bundle) as client:
        assert await client.digest(0) == {}  # nothing from the file was published

    code = await _cli(
        "platform",
        "publish",
        "--bundle",
        str(bundle.directory),
        "--file",
        str(path),
        "--skip-invalid",
        "--json",
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["rows"], summary["inserted"], summary["rejected"]) == (18, 18, 2)
    reject_file = Path(summary["reject_file"])
    assert reject_file == tmp_path / "bindings.csv.rejects"
    assert _read_csv(reject_file) == [
        ["line", "field", "reason"],
        ["5", "bound_at", "no UTC offset (write Z or +hh:mm)"],
        ["17", "phone", "not a valid number for its region"],
    ]


async def test_cli_sync_subprocess(registry: RunningRegistry, tmp_path: Path) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(_rows(40))
    rows = _csv_rows(40)[5:]  # rows 0..4 withdrawn; the rest changed bound_at -> republished
    path = _csv(tmp_path / "all.csv", rows)
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("numbind")),
        *("platform", "sync", "--bundle", str(bundle.directory), "--file", str(path)),
        *("--bucket-bits", "4", "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["command"] == "sync" and summary["converged"] is True
    assert (summary["withdrawn"], summary["changed"], summary["added"]) == (5, 35, 0)
    assert summary["buckets_total"] == 16


async def test_server_refusals_are_typed_errors(registry: RunningRegistry) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        record = Record(b"\x01" * 32, "0" * 16, b"ref", T0, Kind.LOGIN)
        with pytest.raises(errors.InvalidRequest) as err:
            await client.publish_records([record])
        assert not isinstance(err.value, grpc.RpcError)
        with pytest.raises(InvalidNumber) as bad:
            await client.publish([*_rows(3), Row("12345", "a", T0)])
        assert bad.value.position == 4 and "12345" not in str(bad.value)
        assert str(bad.value).startswith("number 4: ")
        assert await client.digest(0) == {}  # nothing from the refused input was published


async def test_publish_rides_out_quota_exhaustion(tmp_path: Path) -> None:
    # The token service's quota answers RESOURCE_EXHAUSTED with retry-after; the SDK waits.
    quota = QuotaSettings(rate_per_second=300.0, burst=400, daily_cap=100_000)
    async with running_registry(tmp_path / "data", quota=quota) as reg:
        bundle = reg.add_platform("acme")
        async with PlatformClient(bundle, batch_size=300) as client:
            started = time.monotonic()
            summary = await client.publish(_rows(1500))
            elapsed = time.monotonic() - started
        assert summary.inserted == 1500
        # 1,100 evaluations beyond the burst at 300/s: only possible if the SDK waited.
        assert elapsed >= (1500 - 400) / 300 * 0.9


async def test_cli_sync_refuses_an_empty_snapshot_unless_allowed(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish(_rows(10))
    path = _csv(tmp_path / "empty.csv", [])
    args = ["platform", "sync", "--bundle", str(bundle.directory), "--file", str(path)]
    assert await _cli(*args) == 1
    assert "no valid rows" in capsys.readouterr().err
    assert await _cli(*args, "--allow-empty", "--json") == 0
    assert json.loads(capsys.readouterr().out)["withdrawn"] == 10
