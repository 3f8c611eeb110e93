"""The operator's path as a new user runs it: `numbind admin init`, `add-platform`, `serve`,
a call through the bundle, then SIGTERM: a clean, quick stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

NUMBIND = [sys.executable, "-m", "numbind.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> str:
    out = subprocess.run([*NUMBIND, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_init_add_platform_serve_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    assert "admin bundle" in _run("admin", "init", "--data-dir", str(data), "--registry", listen)
    # init is idempotent: a second run keeps the CA.
    assert "CA:             kept" in _run("admin", "init", "--data-dir", str(data))
    key_file = data / "pki" / "ca.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_files = list((data / "keys").glob("*.key"))
    assert len(key_files) == 1
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in key_files)
    _run(
        "admin",
        "add-platform",
        "acme",
        "--display-name",
        "示例网盘",
        "--category",
        "cloud-drive",
        "--out",
        str(tmp_path / "acme"),
        "--data-dir",
        str(data),
        "--registry",
        listen,
    )

    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*NUMBIND, "serve", "--data-dir", str(data), "--listen", listen],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NUMBIND_LOG_LEVEL": "INFO"},
        )
    try:
        bundle = Bundle.load(tmp_path / "acme")
        deadline = time.monotonic() + 20
        with secure_channel(bundle, aio=False) as channel:
            while True:
                try:
                    resp = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            keys = tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
            assert keys.suite == "ristretto255-SHA512" and len(keys.keys) == 1
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 7
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "registry stopped" in text
    # Structured logs: every log line is JSON (the listening banner aside).
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert lines and all('"level"' in ln for ln in lines)
    assert not re.search(r"\+86\d{11}", text)


def test_serve_without_init_explains(tmp_path: Path) -> None:
    out = subprocess.run(
        [*NUMBIND, "serve", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "numbind admin init" in out.stderr


def _serve_fails(data: Path, *args: str) -> str:
    """`numbind serve` that must fail: its stderr (logs at WARNING and up, so only what goes
    wrong shows), after checking it exited 1."""
    out = subprocess.run(
        [*NUMBIND, "serve", "--data-dir", str(data), "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    return out.stderr


def test_a_garbled_server_key_or_certificate_is_named_not_the_port(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("admin", "init", "--data-dir", str(data))
    pki = data / "pki"
    for name, want in (("server.key", "not an unencrypted PEM private key"),
                       ("server.pem", "not a PEM certificate")):  # fmt: skip
        good = (pki / name).read_bytes()
        (pki / name).write_bytes(b"garbage\n")
        stderr = _serve_fails(data, "--listen", f"127.0.0.1:{_free_port()}")
        # One line naming the file, not gRPC's "Failed to bind to address" traceback.
        assert stderr.splitlines() == [
            f"numbind: error: {pki / name}: {want}; remove {pki / 'server.key'} and "
            f"{pki / 'server.pem'} and run `numbind admin init --data-dir {data}` to issue "
            "a new pair"
        ]
        (pki / name).write_bytes(good)


def test_metrics_listen_in_use_is_one_line_naming_the_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("admin", "init", "--data-dir", str(data))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = f"127.0.0.1:{taken.getsockname()[1]}"
        stderr = _serve_fails(
            data, "--listen", f"127.0.0.1:{_free_port()}", "--metrics-listen", metrics
        )
    # Nothing from a gRPC server left running (Server.__del__, "never awaited").
    assert stderr.splitlines() == [
        f"numbind: error: --metrics-listen {metrics}: address already in use"
    ]
