"""`numbind admin` against a registry served where the operator chose, as a new operator runs
it in a shell: init, serve on another port, then the actions that need the running registry
with no flags at all (they find it through DATA_DIR/serving.json); once it stops (or is
killed, leaving serving.json behind), one plain line naming the address tried and the file it
came from."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from numbind.cli.admin_remote import stats_table
from numbind.protocol import voprf
from numbind.sdk.admin import OrderCounts, PrincipalUsage, RegistryStats, RekeyProgress

NUMBIND = [sys.executable, "-m", "numbind.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _numbind(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBIND_")}
    return subprocess.run(
        [*NUMBIND, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def _ok(cwd: Path, *args: str) -> str:
    out = _numbind(cwd, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`numbind admin init` and `numbind serve --listen` on a free port (not the 7443 the
    admin bundle names), both in tmp_path with the default data dir ./numbind-data."""
    _ok(tmp_path, "admin", "init")
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [*NUMBIND, "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("NUMBIND_")},
        )
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_admin_finds_the_served_address_and_names_it_when_down(
    tmp_path: Path, serving: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = serving
    data = tmp_path / "numbind-data"
    bundle = json.loads((data / "admin-bundle" / "bundle.json").read_text())
    assert bundle["registry"] != f"127.0.0.1:{port}"  # the bundle alone would miss it

    keys = json.loads(_ok(tmp_path, "admin", "keys", "--json"))["keys"]
    (key,) = keys
    assert key["state"] == "ACTIVE"
    exported = json.loads(_ok(tmp_path, "admin", "export-key", key["key_id"], "--json"))
    assert voprf.public_key(bytes.fromhex(exported["secret_scalar"])).hex() == key["public_key"]

    text = _ok(tmp_path, "admin", "stats")
    lines = text.splitlines()
    assert lines[0].split() == ["count"]
    assert any(line.split() == ["platforms", "0"] for line in lines)
    assert any(line.split()[:2] == ["revocation", "orders"] for line in lines)
    assert any(line.startswith("  overdue") for line in lines)
    stats = json.loads(_ok(tmp_path, "admin", "stats", "--json"))
    assert stats["principals"] == {"platforms": 0, "carriers": 0}
    assert set(stats["orders"]) == {"pending", "delivered", "overdue", "done", "rejected", "total"}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    # A clean stop takes serving.json away; a killed process leaves it behind, named in
    # the message when nothing answers there.
    assert not (data / "serving.json").exists()
    (data / "serving.json").write_text(json.dumps({"address": f"127.0.0.1:{port}"}))
    for action in (["stats"], ["export-key", key["key_id"]], ["rotate-key"]):
        down = _numbind(tmp_path, "admin", *action)
        assert down.returncode == 1, down.stderr
        assert down.stdout == ""
        (message,) = down.stderr.splitlines()  # one line, no traceback
        assert f"127.0.0.1:{port}" in message
        assert str(Path("numbind-data") / "serving.json") in message
        assert "StatusCode" not in message and "failed to connect to all" not in message
        assert "--registry" in message

    # Client commands say the same from their bundle, not gRPC's connection text.
    down = _numbind(tmp_path, "tokenize", "--bundle", "numbind-data/admin-bundle", "13800138000")
    assert down.returncode == 1
    (message,) = down.stderr.splitlines()
    assert message.startswith(
        f"numbind: error: cannot reach the registry at {bundle['registry']} (the address in "
        f"{Path('numbind-data') / 'admin-bundle' / 'bundle.json'}): "
    )
    assert "failed to connect to all" not in message

    # Without serving.json the bundle's address is tried, and the message says so.
    (data / "serving.json").unlink()
    down = _numbind(tmp_path, "admin", "stats", "--registry", f"127.0.0.1:{port}")
    assert down.returncode == 1 and f"127.0.0.1:{port} (--registry)" in down.stderr
    down = _numbind(tmp_path, "admin", "keys")
    assert down.returncode == 1
    assert bundle["registry"] in down.stderr
    assert str(Path("numbind-data") / "admin-bundle" / "bundle.json") in down.stderr


def test_stats_table_aligns_columns_under_headings() -> None:
    stats = RegistryStats(
        platforms=2,
        carriers=1,
        active_bindings=1234567,
        numbers=1002,
        orders=OrderCounts(pending=2, delivered=0, overdue=1, done=12, rejected=1),
        usage=(
            PrincipalUsage("platform", "acme", 1000, 3),
            PrincipalUsage("carrier", "cm-long-name", 12, 1),
        ),
    )
    counts, usage = stats_table(stats).split("\n\n")
    count_lines = counts.splitlines()
    # Numbers right-aligned in one column, with thousands separators.
    ends = {len(line) for line in count_lines}
    assert len(ends) == 1
    assert any(line.split() == ["bindings", "(active)", "1,234,567"] for line in count_lines)
    assert any(line.split() == ["revocation", "orders", "16"] for line in count_lines)
    usage_lines = usage.splitlines()
    assert usage_lines[0].split() == [
        "role",
        "principal",
        "tokens",
        "evaluated",
        "reassigned",
        "checks",
    ]
    # Every cell starts under its heading's first letter (text) or ends under its last
    # (numbers).
    head = usage_lines[0]
    for line in usage_lines[1:3]:
        assert line.index(line.split()[1]) == head.index("principal")
        assert line.rstrip().endswith(line.split()[-1])
        assert len(line) == len(head)
    assert usage_lines[-1] == "(2 principals with usage)"
    assert json.loads(json.dumps(stats.as_json()))["orders"]["overdue"] == 1


def test_stats_table_shows_the_store_rekey_rows_rate_and_eta() -> None:
    rekey = RekeyProgress(
        from_key_id="a" * 16,
        to_key_id="b" * 16,
        state="RUNNING",
        rows_done=50_000,
        rows_total=200_000,
        rows_per_second=12_500.0,
        eta_seconds=12.0,
        started_at=datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
        finished_at=None,
    )
    stats = RegistryStats(
        platforms=1,
        carriers=1,
        active_bindings=200_000,
        numbers=150_000,
        orders=OrderCounts(pending=0, delivered=0, overdue=0, done=0, rejected=0),
        usage=(),
        rekey=rekey,
    )
    counts, section, usage = stats_table(stats).split("\n\n")
    assert any(line.split() == ["numbers", "150,000"] for line in counts.splitlines())
    assert usage == "usage: none yet"
    lines = {line.split()[0]: line.split()[1:] for line in section.splitlines()}
    assert lines["store"] == ["re-key"]
    assert lines["keys"] == ["a" * 16, "->", "b" * 16]
    assert lines["rows"] == ["50,000", "of", "200,000", "(25%)"]
    assert lines["rate"] == ["12,500", "rows/s"]
    assert lines["ETA"] == ["12", "s", "left"]
    assert lines["finished"] == ["-"]
    assert json.loads(json.dumps(stats.as_json()))["rekey"]["rows_done"] == 50_000
    finished = replace(rekey, state="DONE", rows_done=200_000, eta_seconds=0.0)
    done = replace(stats, rekey=finished)
    section = stats_table(done).split("\n\n")[1]
    assert "200,000 of 200,000 (100%)" in section and "done" in section.split("ETA")[1]
    # A total is 0 on the wire until counted; a finished re-key of nothing counted 0.
    counting = replace(rekey, rows_done=0, rows_total=0, rows_per_second=0.0, eta_seconds=0.0)
    section = stats_table(replace(stats, rekey=counting)).split("\n\n")[1]
    assert "0 of (counting)" in section and "not known yet" in section
    empty = replace(counting, state="DONE")
    section = stats_table(replace(stats, rekey=empty)).split("\n\n")[1]
    assert ["rows", "0", "of", "0"] in [line.split() for line in section.splitlines()]
