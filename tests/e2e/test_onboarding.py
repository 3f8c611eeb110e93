"""Onboarding as a new operator and platform engineer do it, in a shell: a registry served on
a port of its own, `admin add-platform` with no --registry, then a publish with no hand
edits; a second add-platform pointing at `reissue-bundle`, which retires the old
certificate (the registry refuses it over real mTLS) and keeps the platform's account refs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.testing import RunningRegistry
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, PlatformClient, Unauthenticated

from tests.e2e._story import days_ago

NUMBIND = [sys.executable, "-m", "numbind.cli"]
CSV = (
    "phone,account_id,bound_at,kind\n"
    "13800138000,user-42,2024-03-01T09:30:00+08:00,login\n"
    "13912345678,user-7,2024-03-02T10:00:00+08:00,payment\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def numbind(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBIND_")}
    return subprocess.run(
        [*NUMBIND, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def ok(cwd: Path, *args: str) -> str:
    out = numbind(cwd, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    """`numbind admin init` then `numbind serve` on a free port that is not 7443."""
    ok(tmp_path, "admin", "init", "--data-dir", "reg")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [*NUMBIND, "serve", "--data-dir", "reg", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("NUMBIND_")},
        )
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(15)


def publish(cwd: Path, bundle: str) -> subprocess.CompletedProcess[str]:
    return numbind(cwd, "platform", "publish", "--bundle", bundle, "--file", "accounts.csv")


def test_add_platform_then_publish_with_no_hand_edits_then_reissue(
    tmp_path: Path, served: int
) -> None:
    (tmp_path / "accounts.csv").write_text(CSV)
    add = ["admin", "add-platform", "acme", "--display-name", "示例网盘", "--category", "other"]
    said = ok(tmp_path, *add, "--data-dir", "reg", "--out", "acme")
    assert f"for 127.0.0.1:{served}" in said
    assert json.loads((tmp_path / "acme" / "bundle.json").read_text())["registry"] == (
        f"127.0.0.1:{served}"
    )
    first = publish(tmp_path, "acme")
    assert first.returncode == 0, first.stderr
    assert "published 2 rows from accounts.csv: 2 new" in first.stdout
    ref_key = (tmp_path / "acme" / "account-ref.key").read_bytes()

    # Registering again says how to get a fresh bundle instead.
    again = numbind(tmp_path, *add, "--data-dir", "reg", "--out", "acme-2")
    assert again.returncode == 1
    assert "'acme' is already registered" in again.stderr
    assert "numbind admin reissue-bundle acme --data-dir reg --out DIR" in again.stderr

    # A new bundle elsewhere: the note says what to carry over.
    (tmp_path / "old-acme").mkdir()
    for f in (tmp_path / "acme").iterdir():
        (tmp_path / "old-acme" / f.name).write_bytes(f.read_bytes())
    fresh = ok(tmp_path, "admin", "reissue-bundle", "acme", "--data-dir", "reg", "--out", "new")
    assert "reissued spiffe://numbind/platform/acme" in fresh
    assert "copy it (and feed-cursor.json) from the old bundle" in fresh
    # Over the old directory: credentials replaced, account refs kept, no note.
    over = ok(tmp_path, "admin", "reissue-bundle", "acme", "--data-dir", "reg", "--out", "acme")
    assert "copy it" not in over
    assert (tmp_path / "acme" / "account-ref.key").read_bytes() == ref_key
    assert (tmp_path / "acme" / "client.pem").read_bytes() != (
        tmp_path / "old-acme" / "client.pem"
    ).read_bytes()

    # The old certificate is refused (a running registry learns within its cache's second);
    # the newest bundle works, and its account refs still match what was published.
    deadline = time.monotonic() + 10
    while (old := publish(tmp_path, "old-acme")).returncode == 0:
        assert time.monotonic() < deadline, "the registry still accepts the old certificate"
        time.sleep(0.3)
    assert "replaced by a reissued bundle; use the new bundle" in old.stderr
    refused_new = publish(tmp_path, "new")  # reissued once more since: refused too
    assert refused_new.returncode == 1
    now = publish(tmp_path, "acme")
    assert now.returncode == 0, now.stderr
    assert "0 new, 0 updated, 2 unchanged" in now.stdout

    unknown = numbind(
        tmp_path, "admin", "reissue-bundle", "nobody", "--data-dir", "reg", "--out", "x"
    )
    assert unknown.returncode == 1 and "no platform or carrier named 'nobody'" in unknown.stderr


async def test_reissued_carrier_old_certificate_refused_new_bundle_and_key_work(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    old = registry.add_carrier("cm", "示例移动")
    async with CarrierClient(old) as carrier:
        await carrier.report([LifecycleReport("+8613800138000", Lifecycle.ISSUED, days_ago(9))])
    new = await asyncio.to_thread(
        operator.reissue_bundle, registry.settings, "carrier", "cm", tmp_path / "cm-new"
    )
    assert new.registry == registry.address  # where the registry serves (serving.json)
    assert new.attestation_seed != old.attestation_seed
    registry.registry.directory.invalidate()
    # The old certificate still passes the TLS handshake (the CA signed it): the registry's
    # pin refuses it, with a message that says what to do.
    async with CarrierClient(old) as carrier:
        with pytest.raises(Unauthenticated, match="replaced by a reissued bundle"):
            await carrier.query("s", [("+8613800138000", days_ago(9))])
    async with CarrierClient(Bundle.load(tmp_path / "cm-new")) as carrier:
        (view,) = await carrier.query("s", [("+8613800138000", days_ago(9))])
        assert view.platforms == []
    # A platform's reissue leaves other principals alone.
    acme = registry.add_platform("acme")
    async with PlatformClient(acme) as client:
        assert await client.digest(0) == {}


def test_a_bundle_pointing_nowhere_fails_before_the_file_is_read(tmp_path: Path) -> None:
    ok(tmp_path, "admin", "init", "--data-dir", "reg")
    port = free_port()  # nothing serves here
    ok(
        tmp_path,
        *("admin", "add-platform", "gone", "--display-name", "G", "--category", "other"),
        *("--data-dir", "reg", "--out", "gone", "--registry", f"127.0.0.1:{port}"),
    )
    # A file with a bad row: had it been read first, the command would report the row.
    (tmp_path / "accounts.csv").write_text(CSV + "12345,bad,2024-03-01T09:30:00+08:00,login\n")
    out = publish(tmp_path, "gone")
    assert out.returncode == 1
    (message,) = out.stderr.splitlines()
    assert message == (
        f"numbind: error: cannot reach the registry at 127.0.0.1:{port} (the address in "
        f"{Path('gone') / 'bundle.json'}): nothing is listening (connection refused)"
    )
