"""The carrier and platform-feed commands of `numbind`, end to end against a real registry:
report a lifecycle file or revoke for the holder, watch the revocation reach the platforms'
feeds, ack it from the command line, and see it settle for the holder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry.testing import RunningRegistry
from numbind.sdk import AckOutcome, EventFeed, EventKind
from numbind.sdk.channel import secure_channel

from tests.e2e._cli import OTHER, PHONE, cli, iso
from tests.e2e._story import days_ago, publish, tokenize

ROOT = Path(__file__).resolve().parents[2]


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def ack_all(bundle: Bundle, cursor: Path, expect: int, outcome: AckOutcome) -> None:
    async with secure_channel(bundle) as channel:
        feed = EventFeed(channel, cursor)
        seen = 0
        async for event in feed.events():
            await event.ack(None if event.kind == EventKind.NUMBER_DEACTIVATED else outcome)
            seen += 1
            if seen == expect:
                return


async def test_report_feed_ack_revocation_query_and_reassigned(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = registry.add_carrier("cm", "示例移动")
    drive = registry.add_platform("drive", "示例网盘", "cloud-drive")
    food = registry.add_platform("food", "示例外卖", "food-delivery")
    token = await tokenize(drive, PHONE)
    await publish(drive, token, [(b"old-drive", days_ago(400))])
    await publish(food, token, [(b"old-food", days_ago(400))])

    # The whole life of the number in one file: the old holder got it, cancelled it, and
    # it was sold again 10 days ago.
    lifecycle = tmp_path / "lifecycle.csv"
    lifecycle.write_text(
        "phone,event,effective_at\n"
        f"{PHONE},issued,{iso(days_ago(500))}\n"
        f"{PHONE},Deactivated,{iso(days_ago(100))}\n"
        f"{PHONE},REISSUED,{iso(days_ago(10))}\n"
    )
    rc, out, _ = await cli(
        capsys, "carrier", "report", "--bundle", cm.directory, "--file", lifecycle, "--json"
    )
    assert rc == 0
    summary = json.loads(out)
    assert {k: summary[k] for k in ("events", "applied", "superseded")} == {
        "events": 3,
        "applied": 3,
        "superseded": 0,
    }
    assert (summary["notices_created"], summary["orders_created"]) == (2, 2)
    (revocation_id,) = summary["revocation_ids"]

    # Pending at drive: the deactivation notice, then the revocation order. Printing alone
    # acks nothing, so a second look shows the same two.
    for _ in range(2):
        rc, out, _ = await cli(capsys, "platform", "events", "--bundle", drive.directory, "--json")
        assert rc == 0
        notice, order = json_lines(out)
        assert (notice["seq"], notice["kind"], notice["cause"]) == (
            1,
            "NUMBER_DEACTIVATED",
            "DEACTIVATED",
        )
        assert (order["seq"], order["kind"], order["cause"]) == (2, "REVOKE", "REISSUED")
        assert order["revocation_id"] == revocation_id
        assert order["account_ref"] == b"old-drive".hex() == notice["account_ref"]
        assert order["bound_at"] == days_ago(400).isoformat().replace("+00:00", "Z")
        assert order["ack"] is None
    assert not (drive.directory / "feed-cursor.json").exists()

    rc, out, _ = await cli(
        capsys, "platform", "events", "--bundle", drive.directory, "--ack", "unbound", "--json"
    )
    assert rc == 0
    assert [(e["seq"], e["ack"]) for e in json_lines(out)] == [(1, "NOTED"), (2, "UNBOUND")]
    assert json.loads((drive.directory / "feed-cursor.json").read_text()) == {"acked_through": 2}
    rc, out, err = await cli(capsys, "platform", "events", "--bundle", drive.directory)
    assert (rc, out) == (0, "")
    assert "0 events" in err

    # The holder's view: drive is done, food has not acted yet.
    rc, out, _ = await cli(
        capsys, "carrier", "revocation", "--bundle", cm.directory, revocation_id, "--json"
    )
    assert rc == 0
    progress = json.loads(out)
    states = {p["platform_id"]: p["state"] for p in progress["platforms"]}
    assert states["drive"] == "DONE" and states["food"] in ("PENDING", "DELIVERED")
    assert progress["settled"] is False
    rc, out, err = await cli(
        capsys, "carrier", "revocation", "--bundle", cm.directory, revocation_id, "--wait", "0.5"
    )
    assert rc == 1 and "not every platform" in err
    assert "DONE" in out and "示例网盘 (drive, cloud-drive): 2/2 done" in out

    rc, out, _ = await cli(
        capsys,
        "carrier",
        "query",
        "--bundle",
        cm.directory,
        "--subject",
        "sub-1",
        "--phone",
        PHONE,
        "--tenure-start",
        iso(days_ago(10)),
        "--json",
    )
    assert rc == 0
    (number,) = json.loads(out)["numbers"]
    assert number["phone"] == PHONE
    assert not [
        p
        for p in number["platforms"]
        if p["platform_id"] == "drive" and p["tenure_class"] == "PRE_TENURE"
    ]

    # --wait follows food's ack as it happens.
    started = time.monotonic()
    waiter = asyncio.create_task(
        cli(
            capsys,
            "carrier",
            "revocation",
            "--bundle",
            cm.directory,
            revocation_id,
            "--json",
            "--wait",
            "10",
        )
    )
    await asyncio.sleep(1.5)
    assert not waiter.done()
    await ack_all(food, tmp_path / "food-cursor.json", 2, AckOutcome.UNBOUND)
    rc, out, _ = await waiter
    assert time.monotonic() - started < 10
    assert rc == 0
    progress = json.loads(out)
    assert progress["settled"] is True
    assert {p["platform_id"]: p["state"] for p in progress["platforms"]} == {
        "drive": "DONE",
        "food": "DONE",
    }

    # Reassigned since D: yes before the reissue, no after; no data for an unknown number.
    for bundle in (food, cm):
        rc, out, _ = await cli(
            capsys,
            "platform",
            "check-reassigned",
            "--bundle",
            bundle.directory,
            "--phone",
            PHONE,
            "--since",
            days_ago(50).date().isoformat(),
            "--phone",
            PHONE,
            "--since",
            iso(days_ago(5)),
            "--phone",
            OTHER,
            "--since",
            "2020-01-01",
            "--json",
        )
        assert rc == 0
        answers = json.loads(out)["answers"]
        assert [a["answer"] for a in answers] == ["REASSIGNED", "NOT_REASSIGNED", "NO_DATA"]
        # A date alone is 00:00 in --region's zone: CN by default, +08:00.
        assert answers[2]["since"] == "2019-12-31T16:00:00Z"
    rc, out, _ = await cli(
        capsys,
        "platform",
        "check-reassigned",
        "--bundle",
        food.directory,
        "--phone",
        PHONE,
        "--since",
        iso(days_ago(50)),
    )
    assert (rc, out) == (0, f"{PHONE}\t{days_ago(50).isoformat()[:-6]}Z\tREASSIGNED\n")


async def test_holder_revoke_by_platform_and_follow_until_ctrl_c(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = registry.add_carrier("cm")
    drive = registry.add_platform("drive", "示例网盘", "cloud-drive")
    food = registry.add_platform("food", "示例外卖", "food-delivery")
    token = await tokenize(drive, PHONE)
    await publish(drive, token, [(b"prev", days_ago(60)), (b"mine", days_ago(3))])
    await publish(food, token, [(b"prev", days_ago(60))])
    issued = tmp_path / "issued.csv"
    issued.write_text(f"effective_at,phone,event\n{iso(days_ago(30))},{PHONE},ISSUED\n")
    rc, _, err = await cli(capsys, "carrier", "report", "--bundle", cm.directory, "--file", issued)
    assert rc == 0, err

    base = ["carrier", "query", "--bundle", cm.directory, "--subject", "sub-9"]
    rc, out, _ = await cli(capsys, *base, "--phone", PHONE, "--tenure-start", iso(days_ago(30)))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{PHONE}  tenure since ")
    assert any(
        "previous holder's" in line and "示例外卖 (food, food-delivery): 1 binding" in line
        for line in lines
    )
    assert any("yours" in line and "(drive, cloud-drive): 1 binding" in line for line in lines)

    revoke = ["carrier", "revoke", "--bundle", cm.directory, "--phone", PHONE]
    revoke += ["--tenure-start", iso(days_ago(30))]
    rc, _, err = await cli(capsys, *revoke, "--scope", "all", "food")
    assert rc == 2 and "usage: numbind carrier revoke" in err and "--scope:" in err
    rc, out, _ = await cli(capsys, *revoke, "--scope", "food", "--json")
    assert rc == 0
    revoked = json.loads(out)
    assert (revoked["orders"], revoked["scope"], revoked["platform_ids"]) == (
        1,
        "PLATFORMS",
        ["food"],
    )

    # Follow food's feed in a real process, see the order, stop it with Ctrl-C.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from numbind.cli import main; raise SystemExit(main())",
        "platform",
        "events",
        "--bundle",
        str(food.directory),
        "--follow",
        "--ack",
        "already-gone",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    event = json.loads(line)
    assert (event["kind"], event["cause"], event["ack"]) == (
        "REVOKE",
        "HOLDER_REQUEST",
        "ALREADY_GONE",
    )
    assert event["revocation_id"] == revoked["revocation_id"]
    await asyncio.sleep(0.5)  # the ack is sent right after the line is printed
    proc.send_signal(signal.SIGINT)
    # A bound, not a timing claim: on a loaded 2-core CI run the interrupted process took
    # more than 10 s to unwind its channel and exit.
    rc = await asyncio.wait_for(proc.wait(), 60)
    err = (await proc.stderr.read()).decode()
    assert rc == 130, err
    assert "Traceback" not in err

    rc, out, _ = await cli(
        capsys,
        "carrier",
        "revocation",
        "--bundle",
        cm.directory,
        revoked["revocation_id"],
        "--wait",
        "5",
    )
    assert rc == 0
    assert out.splitlines()[1].split()[0] == "DONE"
    # Only the holder's own binding is left.
    rc, out, _ = await cli(
        capsys, *base, "--phone", PHONE, "--tenure-start", iso(days_ago(30)), "--json"
    )
    (number,) = json.loads(out)["numbers"]
    assert sorted((p["platform_id"], p["tenure_class"]) for p in number["platforms"]) == [
        ("drive", "IN_TENURE"),
        ("drive", "PRE_TENURE"),
    ]
