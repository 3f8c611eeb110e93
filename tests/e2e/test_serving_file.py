"""DATA_DIR/serving.json with one or several `numbind serve` processes on a data dir: it names
the process that wrote it (the last started) and goes when that process stops cleanly, so
admin commands are not sent to a stopped process; a later process's file is left alone. With
several processes behind a load balancer, `admin init --registry LB` records the address
clients use (DATA_DIR/advertised.json), and new bundles and admin commands take it over
serving.json, which can name only one of them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from numbind.protocol.bundle import Bundle
from numbind.registry.testing import running_registry

NUMBIND = [sys.executable, "-m", "numbind.cli"]


def _numbind(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBIND_")}
    return subprocess.run([*NUMBIND, *args], capture_output=True, text=True, timeout=60, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_clean_stop_removes_the_serving_file_that_names_this_process(
    tmp_path: Path,
) -> None:
    serving = tmp_path / "data" / "serving.json"
    async with running_registry(tmp_path / "data") as registry:
        assert json.loads(serving.read_text()) == {
            "address": registry.address,
            "pid": os.getpid(),
        }
    assert not serving.exists()


async def test_a_stop_leaves_the_serving_file_of_a_process_started_later(
    tmp_path: Path,
) -> None:
    serving = tmp_path / "data" / "serving.json"
    async with running_registry(tmp_path / "data") as registry:
        # A second process on the same data dir (PostgreSQL store) started since.
        later = json.dumps({"address": "127.0.0.1:48999", "pid": os.getpid() + 1}) + "\n"
        serving.write_text(later)
        assert registry.address != "127.0.0.1:48999"
    assert serving.read_text() == later


def test_the_advertised_address_wins_over_the_serving_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    balancer = f"127.0.0.1:{_free_port()}"  # nothing listens: the admin action fails
    init = _numbind("admin", "init", "--data-dir", str(data), "--registry", balancer)
    assert init.returncode == 0, init.stderr
    assert json.loads((data / "advertised.json").read_text()) == {"address": balancer}
    # The last process started wrote its own address.
    (data / "serving.json").write_text(json.dumps({"address": "127.0.0.1:48998"}))

    out = tmp_path / "acme"
    added = _numbind(
        "admin", "add-platform", "acme", "--display-name", "A", "--category", "other",
        "--data-dir", str(data), "--out", str(out),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert Bundle.load(out).registry == balancer
    reissued = _numbind(
        "admin", "reissue-bundle", "acme", "--data-dir", str(data), "--out", str(out)
    )
    assert reissued.returncode == 0, reissued.stderr
    assert Bundle.load(out).registry == balancer

    down = _numbind("admin", "stats", "--data-dir", str(data))
    assert down.returncode == 1
    (message,) = down.stderr.splitlines()
    assert f"cannot reach the registry at {balancer} (the address in " in message
    assert str(data / "advertised.json") in message

    # --registry still names another; a malformed one is refused before anything is written.
    bad = _numbind("admin", "init", "--data-dir", str(data), "--registry", "no-port")
    assert bad.returncode == 1 and "is not host:port" in bad.stderr
    assert json.loads((data / "advertised.json").read_text()) == {"address": balancer}


def test_a_process_listening_everywhere_is_noted_at_loopback(tmp_path: Path) -> None:
    # `serve --listen 0.0.0.0:7443` wrote 0.0.0.0:7443, which new bundles then named:
    # no address to dial, and one the server certificate never names.
    from numbind.registry.config import (
        SERVING_FILE,
        client_address,
        forget_served_address,
        record_served_address,
    )

    for listen, noted in (("0.0.0.0:7443", "127.0.0.1:7443"), ("[::]:7443", "[::1]:7443")):
        record_served_address(tmp_path, listen)
        assert client_address(tmp_path) == (noted, tmp_path / SERVING_FILE)
        forget_served_address(tmp_path, listen)  # the same process, stopping
        assert not (tmp_path / SERVING_FILE).exists()
    record_served_address(tmp_path, "10.0.0.5:7443")
    assert client_address(tmp_path) == ("10.0.0.5:7443", tmp_path / SERVING_FILE)
