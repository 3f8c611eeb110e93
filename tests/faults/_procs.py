"""Processes the fault suite kills: `numbind serve`, a platform consumer, a PostgreSQL
cluster of its own. Each child runs in its own process group so kill -9 takes it whole
(the registry and its crypto workers die together, as in a crash), and is ended in a
finaliser by its own pid, never by name."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from numbind.registry.config import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(log: Path, seen: int, text: bytes, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while text not in log.read_bytes()[seen:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} from {proc.args!r}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            kill_9(proc)


class Serve:
    """`numbind serve` on `settings` as a child process that can be killed and restarted."""

    def __init__(self, settings: Settings, log: Path, log_level: str = "INFO") -> None:
        self.settings = settings
        self.log = log
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "NUMBIND_LOG_LEVEL": self.log_level}
        if self.settings.database_url:
            env["NUMBIND_DATABASE_URL"] = self.settings.database_url
        seen = self.log.stat().st_size if self.log.exists() else 0
        args = ["serve", "--data-dir", str(self.settings.data_dir), "--listen"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "numbind.cli", *args, self.settings.listen],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        _wait_for(self.log, seen, b"listening on", self.proc)

    def kill_9(self) -> None:
        assert self.proc is not None
        kill_9(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _end(self.proc)


@contextmanager
def serving(settings: Settings, log: Path) -> Iterator[Serve]:
    serve = Serve(settings, log)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


@contextmanager
def child(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Python child (`python args...`) in its own process group, ended on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        _end(proc)


# ---- a PostgreSQL cluster of the suite's own ------------------------------------------------


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgCluster:
    """initdb + pg_ctl of the machine's PostgreSQL in a temp dir on a free loopback port.

    PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="numbind-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        # As another user through runuser, not subprocess's `user=`: that setuid makes
        # Python fork() instead of vfork(), and a fork from this gRPC-threaded process runs
        # gRPC's fork handlers in the child, which once failed `pg_ctl stop` with nothing
        # from pg_ctl but "epoll_wait error: Bad file descriptor" (a CI run of this stop).
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        out = subprocess.run(command, capture_output=True, cwd=self.root, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"{args}: {out.stdout.decode()} {out.stderr.decode()}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "-N"
        )

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories='{self.root}' -c fsync=off -c max_connections=60"
        )
        log = self.root / "pg.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with suppress(AssertionError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
