"""Three `numbind serve` processes on one PostgreSQL behind Debian's HAProxy (TCP mode).

TCP mode passes the TLS connection through untouched, so mTLS ends at a registry and the
client certificate still names the caller. Each registry is a child process in its own
process group (its crypto workers go with it); HAProxy runs in the foreground (-db) with
a stats socket the tests read to see which registry holds which connection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from numbind.protocol.bundle import Bundle
from numbind.registry import operator
from numbind.registry.config import QuotaSettings, Settings

from tests.conftest import IN_CI, require_postgres

NAMES = ("r1", "r2", "r3")

HAPROXY_CFG = """\
global
    maxconn 4096
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    # A connection refused by a registry that is stopping is tried on another.
    retries 3
    option redispatch

frontend grpc
    bind 127.0.0.1:{port}
    default_backend registries

backend registries
    balance roundrobin
    default-server inter 300ms fall 1 rise 2 on-marked-down shutdown-sessions
{servers}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_haproxy() -> str:
    path = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if path is None:
        if IN_CI:
            pytest.fail("CI=true but haproxy is not installed (make haproxy)")
        pytest.skip("haproxy is not installed: `make haproxy` (Debian's package)")
    return path


@dataclass
class Process:
    name: str
    port: int
    log: Path
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    settings: Settings
    lb_port: int
    stats_sock: Path
    processes: dict[str, Process]
    env: dict[str, str]
    haproxy: subprocess.Popen[bytes] | None = None
    restarts: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.lb_port}"

    def bundle(self, role: str, name: str, *, address: str | None = None) -> Bundle:
        """The principal's bundle, registered on first use."""
        # Outside the data dir, which must stay private (bundles hold public files too).
        out = self.settings.data_dir.parent / "bundles" / f"{role}-{name}"
        if (out / "bundle.json").exists():
            from dataclasses import replace

            return replace(Bundle.load(out), registry=address or self.address)
        return operator.add_principal(
            self.settings,
            role,
            name,
            out,
            display_name=name,
            category="other" if role == "platform" else "",
            registry_address=address or self.address,
        )

    def admin_bundle(self, address: str | None = None) -> Bundle:
        admin = Bundle.load(self.settings.data_dir / operator.ADMIN_BUNDLE)
        from dataclasses import replace

        return replace(admin, registry=address or self.address)

    # -- registries -------------------------------------------------------------------
    def start(self, name: str, timeout: float = 90.0) -> None:
        p = self.processes[name]
        serve = ["serve", "--data-dir", str(self.settings.data_dir), "--listen", p.address]
        serve += ["--metrics-listen", f"127.0.0.1:{p.metrics_port}"]
        with open(p.log, "ab") as out:
            p.proc = subprocess.Popen(
                [sys.executable, "-m", "numbind.cli", *serve],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {p.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", p.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not listen within {timeout:.0f} s")

    def stop(self, name: str, timeout: float = 30.0) -> float:
        """SIGTERM (graceful drain) and wait; returns how long the drain took."""
        p = self.processes[name]
        assert p.proc is not None
        started = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait()
            raise
        finally:
            _kill_group(p.proc)
        return time.monotonic() - started

    # -- haproxy ----------------------------------------------------------------------
    def haproxy_stat(self) -> dict[str, tuple[str, int]]:
        """server name -> (status, current sessions), from the stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats_sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "registries" and row.get("svname") in self.processes:
                out[row["svname"]] = (row["status"], int(row["scur"] or 0))
        return out

    def wait_all_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stat = self.haproxy_stat()
            if len(stat) == len(self.processes) and all(s == "UP" for s, _ in stat.values()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"haproxy does not see every registry up: {self.haproxy_stat()}")

    def sessions(self) -> dict[str, int]:
        return {name: n for name, (_, n) in self.haproxy_stat().items()}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The registry's spawned crypto workers share its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def cluster(
    tmp_path: Path,
    *,
    quota: QuotaSettings | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Three registries on the test PostgreSQL behind HAProxy; all stopped at the end."""
    haproxy = require_haproxy()
    url = require_postgres()
    lb_port = free_port()
    settings = Settings(data_dir=tmp_path / "data", listen=f"127.0.0.1:{lb_port}", database_url=url)
    operator.init(settings, registry_address=settings.listen)
    child_env = {
        **os.environ,
        "NUMBIND_DATABASE_URL": url,
        "NUMBIND_LOG_LEVEL": "INFO",
        "NUMBIND_EVALUATE_WORKERS": "1",
        "NUMBIND_HEARTBEAT_SECONDS": "5",
        # Long enough for calls in flight to finish on a loaded machine; streams end at once.
        "NUMBIND_SHUTDOWN_GRACE_SECONDS": "10",
        **(env or {}),
    }
    if quota is not None:
        child_env["NUMBIND_QUOTA_RATE"] = str(quota.rate_per_second)
        child_env["NUMBIND_QUOTA_BURST"] = str(quota.burst)
        child_env["NUMBIND_QUOTA_DAILY_CAP"] = str(quota.daily_cap)
    processes = {n: Process(n, free_port(), tmp_path / f"{n}.log", free_port()) for n in NAMES}
    sock = tmp_path / "haproxy.sock"
    servers = "\n".join(f"    server {p.name} {p.address} check" for p in processes.values())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(sock=sock, port=lb_port, servers=servers))
    c = Cluster(settings, lb_port, sock, processes, child_env)
    try:
        for name in NAMES:
            c.start(name)
        with open(tmp_path / "haproxy.log", "ab") as out:
            c.haproxy = subprocess.Popen(
                [haproxy, "-f", str(cfg), "-db"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        c.wait_all_up()
        yield c
    finally:
        for p in processes.values():
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in processes.values():
            if p.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(15)
                _kill_group(p.proc)
        if c.haproxy is not None:
            c.haproxy.terminate()
            c.haproxy.wait(10)
