"""`numbind carrier report` on files it cannot send, end to end against a real registry:
bad rows refuse the whole file without echoing numbers, and an event the registry refuses
is named by its line in the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from numbind.cli.carrier import read_reports
from numbind.registry.testing import RunningRegistry
from numbind.sdk import LifecycleReport
from numbind.sdk.carrier import CarrierClient
from numbind.sdk.errors import NumbindClientError

from tests.e2e._cli import OTHER, PHONE, cli, iso
from tests.e2e._story import days_ago


async def test_bad_report_rows_send_nothing_and_never_echo_numbers(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = registry.add_carrier("cm")
    drive = registry.add_platform("drive")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "phone,event,effective_at\n"
        f"{PHONE},ISSUED,{iso(days_ago(30))}\n"
        f"{OTHER},SOLD,{iso(days_ago(30))}\n"
        f"{OTHER},ISSUED,2024-01-01T08:00:00\n"
        f"12345,ISSUED,{iso(days_ago(30))}\n"
    )
    for as_json in (False, True):
        rc, out, err = await cli(
            capsys,
            "carrier",
            "report",
            "--bundle",
            cm.directory,
            "--file",
            bad,
            *(["--json"] if as_json else []),
        )
        assert rc == 1
        assert "line 3: event: unknown" in err
        assert "line 4: effective_at: no UTC offset" in err
        assert "line 5: phone:" in err
        assert "nothing sent" in err
        for digits in ("13800138001", "13900139002", "12345"):
            assert digits not in err and digits not in out
        if as_json:
            failure = json.loads(out)
            assert failure["ok"] is False and failure["invalid_rows"] == 3
            assert [e["line"] for e in failure["errors"]] == [3, 4, 5]
    # Nothing was sent: the valid first row is unknown to the registry.
    rc, out, _ = await cli(
        capsys,
        "platform",
        "check-reassigned",
        "--bundle",
        drive.directory,
        "--phone",
        PHONE,
        "--since",
        "2020-01-01",
    )
    assert rc == 0 and out.endswith("\tNO_DATA\n")

    # The same events as JSON Lines, valid this time, go through; the text summary names them.
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"phone": PHONE, "event": "issued", "effective_at": iso(days_ago(30))})
        + "\n\n"
        + json.dumps({"phone": OTHER, "event": "ported_out", "effective_at": iso(days_ago(9))})
        + "\n"
    )
    rc, out, err = await cli(capsys, "carrier", "report", "--bundle", cm.directory, "--file", good)
    assert rc == 0, err
    assert out.startswith(f"reported 2 events from {good}: 2 applied, 0 superseded")

    # A file without the header's columns fails as a whole, naming what is missing.
    headless = tmp_path / "headless.csv"
    headless.write_text(f"phone,when\n{PHONE},{iso(days_ago(1))}\n")
    rc, out, err = await cli(
        capsys, "carrier", "report", "--bundle", cm.directory, "--file", headless
    )
    assert rc == 1 and "CSV header lacks event, effective_at" in err
    assert "13800138001" not in err


async def test_a_refused_event_is_named_by_its_file_line(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = registry.add_carrier("cm")
    cu = registry.add_carrier("cu")
    issued = tmp_path / "cm.csv"
    issued.write_text(f"phone,event,effective_at\n{PHONE},ISSUED,{iso(days_ago(30))}\n")
    rc, _, err = await cli(capsys, "carrier", "report", "--bundle", cm.directory, "--file", issued)
    assert rc == 0, err

    # cu reports a number cm serves: the registry refuses that event, and with it its batch.
    theirs = tmp_path / "cu.csv"
    theirs.write_text(
        "phone,event,effective_at\n"
        f"{OTHER},ISSUED,{iso(days_ago(20))}\n"
        "\n"
        f"{PHONE},DEACTIVATED,{iso(days_ago(2))}\n"  # line 4, the 2nd event
    )
    async with CarrierClient(cu) as client:
        with pytest.raises(NumbindClientError) as refused:
            # Every row of the file is valid, so it reads as lifecycle events only.
            await client.report(cast(Iterator[LifecycleReport], read_reports(theirs)))
    assert refused.value.position == 2, refused.value  # the 2nd event, 1-based
    for batch in ("1", "100"):
        rc, out, err = await cli(
            capsys,
            "carrier",
            "report",
            "--bundle",
            cu.directory,
            "--file",
            theirs,
            "--batch-size",
            batch,
        )
        assert rc == 1 and out == ""
        assert f"{theirs}: line 4: the registry refused this row: " in err, err
        assert "does not currently serve this number" in err
        assert "events[" not in err and "13800138001" not in err
