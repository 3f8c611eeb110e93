"""CPU each server process spends over a bench's measured window (bench.federation).

Wall-clock figures on the shared 2-core machine move with everyone else's load; the CPU
seconds a server process itself used (utime + stime from /proc/PID/stat, all its threads)
move much less, so a change to the per-reissue work shows there first.

NUMBIND_BENCH_PYSPY=DIR also samples each process with py-spy (if installed next to the
interpreter or on PATH) over the same window only, leaving DIR/NAME.txt in py-spy's raw
(collapsed-stack) format: unlike NUMBIND_BENCH_PROFILE's cProfile, the servers run at full
speed. py-spy counts every thread not waiting (on a loaded machine, also those waiting for
a core); NUMBIND_BENCH_PYSPY_ARGS=--gil counts only the thread holding the GIL.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (None once it is gone, or off Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def checkpoints_since(store: Path, since_us: int) -> int | None:
    """Checkpoints a registry's SQLite store (read-only) holds signed since `since_us`."""
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            sql = "SELECT COUNT(*) FROM log_checkpoints WHERE created_us >= ?"
            return int(conn.execute(sql, (since_us,)).fetchone()[0])
    except sqlite3.Error:
        return None


class BurstMeter:
    """CPU seconds of each named process from `start` to `stop` (py-spy alongside when
    NUMBIND_BENCH_PYSPY names a directory), and the checkpoints each signed meanwhile."""

    def __init__(self, pids: dict[str, int], stores: dict[str, Path] | None = None) -> None:
        self._pids = pids
        self._stores = stores or {}
        self._start: dict[str, float] = {}
        self._start_us = 0
        self._spies: list[subprocess.Popen[bytes]] = []
        self.checkpoints: dict[str, int | None] = {}

    def start(self) -> None:
        if os.environ.get("NUMBIND_BENCH_PROFILE"):  # bench._profiled: profile from here on
            for pid in self._pids.values():
                os.kill(pid, signal.SIGUSR1)
        self._start = {n: cpu_seconds(p) or 0.0 for n, p in self._pids.items()}
        self._start_us = time.time_ns() // 1000
        where, spy = os.environ.get("NUMBIND_BENCH_PYSPY"), _py_spy()
        if not where or spy is None:
            return
        Path(where).mkdir(parents=True, exist_ok=True)
        # e.g. "--gil": only the thread holding the GIL (Python's own CPU, not SQLite's).
        extra = os.environ.get("NUMBIND_BENCH_PYSPY_ARGS", "").split()
        for name, pid in self._pids.items():
            out = Path(where) / f"{name}.txt"
            argv = [spy, "record", "--format", "raw", "--rate", "100", "--nonblocking",
                    "-p", str(pid), "-o", str(out), *extra]  # fmt: skip
            self._spies.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    def stop(self) -> dict[str, float]:
        used = {n: (cpu_seconds(p) or 0.0) - self._start.get(n, 0.0) for n, p in self._pids.items()}
        self.checkpoints = {
            n: checkpoints_since(store, self._start_us) for n, store in self._stores.items()
        }
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self._spies:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        return used
