"""`numbind platform` on files as platforms export them: progress bars for every phase on a
terminal (tokenising included, in steps of at most a thousand rows), semicolon- and
tab-separated files, `platform events` with a header line, and counts in proper English."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import sys
import termios
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from numbind.cli import main as cli_main
from numbind.registry.testing import RunningRegistry
from numbind.sdk import (
    CarrierClient,
    Kind,
    Lifecycle,
    LifecycleReport,
    PlatformClient,
    Progress,
    Row,
    order_reference,
)

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def phone(i: int) -> str:
    return f"138{i:08d}"


def write(path: Path, n: int, delimiter: str = ",") -> Path:
    lines = [delimiter.join(("phone", "account_id", "bound_at", "kind"))]
    lines += [
        delimiter.join((phone(i), f"acct-{i}", (T0 + timedelta(seconds=i)).isoformat(), "login"))
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_publish_reports_tokenising_in_small_steps_from_the_start(
    registry: RunningRegistry,
) -> None:
    bundle = registry.add_platform("acme")
    seen: list[Progress] = []
    rows = [Row(phone(i), f"a{i}", T0, Kind.LOGIN) for i in range(2_500)]
    async with PlatformClient(bundle, batch_size=2_000, progress=seen.append) as client:
        await client.publish(rows, total=len(rows))
    by_phase: dict[str, list[int]] = {}
    for p in seen:
        by_phase.setdefault(p.phase, []).append(p.done)
    assert set(by_phase) == {"tokenise", "publish"}
    for done in by_phase.values():
        assert done[0] == 0 and done[-1] == 2_500  # the bar appears before any work is done
    steps = [b - a for a, b in zip(by_phase["tokenise"], by_phase["tokenise"][1:], strict=False)]
    assert max(steps) <= 1_000  # not one jump per 2,000-row batch
    assert by_phase["publish"][1:] == [2_000, 2_500] or by_phase["publish"][1:] == [500, 2_500]


async def test_cli_draws_a_bar_for_each_phase_on_a_terminal(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bundle = registry.add_platform("acme")
    path = write(tmp_path / "accounts.csv", 2_500)
    master, slave = os.openpty()
    # A terminal 100 columns wide (a fresh pty has none, and tqdm would draw nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "numbind.cli",
        *("platform", "publish", "--bundle", str(bundle.directory), "--file", str(path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=slave,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    os.close(slave)
    await asyncio.to_thread(reader.join, 10)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal
    assert "published 2,500 rows from" in out.decode()
    # check counts rows (no total yet); tokenise and publish run to their total.
    assert re.search(r"check\s*: 2\.50k rows", terminal), terminal
    for phase in ("tokenise", "publish"):
        assert re.search(rf"{phase}\s*: 100%\|[^\n]*\| 2\.50k/2\.50k", terminal), terminal


async def test_semicolon_and_tab_files_publish_and_say_how_they_were_read(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    semi = write(tmp_path / "semi.csv", 1, ";")
    code, out, err = await cli(
        capsys, "platform", "publish", "--bundle", str(bundle.directory), "--file", str(semi)
    )
    assert code == 0, err
    assert f"published 1 row from {semi} (semicolon-separated): 1 new" in out
    tabbed = write(tmp_path / "tabbed.tsv", 3, "\t")
    code, out, err = await cli(
        capsys,
        *("platform", "publish", "--bundle", str(bundle.directory), "--file", str(tabbed)),
        "--format",
        "csv",
    )
    assert code == 0, err
    assert f"published 3 rows from {tabbed} (tab-separated): 2 new, 0 updated, 1 unchanged" in out


async def test_events_text_output_has_a_header_line_and_the_reference(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = registry.add_platform("acme")
    async with PlatformClient(bundle) as client:
        await client.publish([Row(phone(1), "acct-1", T0, Kind.LOGIN)])
    async with CarrierClient(registry.add_carrier("cm")) as carrier:
        await carrier.report(
            [LifecycleReport(phone(1), Lifecycle.REISSUED, datetime.now(UTC) - timedelta(days=1))]
        )
    code, out, err = await cli(capsys, "platform", "events", "--bundle", str(bundle.directory))
    assert code == 0, err
    header, line = out.splitlines()
    names = header.split("\t")
    assert names == [
        "seq",
        "kind",
        "cause",
        "reference",
        "bound_at",
        "account_ref",
        "order_id",
        "revocation_id",
    ]
    event = dict(zip(names, line.split("\t"), strict=True))
    assert (event["seq"], event["kind"], event["cause"]) == ("1", "REVOKE", "REISSUED")
    assert event["reference"] == order_reference(event["order_id"])
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", event["reference"])
    assert "1 event, 0 acked" in err
