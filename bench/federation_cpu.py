"""CPU each server process spends over a bench's measured window (bench.federation).

Wall-clock figures on the shared 2-core machine move with everyone else's load; the CPU
seconds a server process itself used (utime + stime from /proc/PID/stat, all its threads)
move much less, so a change to the per-reissue work shows there first.

NUMBIND_BENCH_PYSPY=DIR also samples each process with py-spy (if installed next to the
interpreter or on PATH) over the same window only, leaving DIR/NAME.txt in py-spy's raw
(collapsed-stack) format: unlike NUMBIND_BENCH_PROFILE's cProfile, neither setup nor
loading is in it, and the servers run at full speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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


class BurstMeter:
    """CPU seconds of each named process from `start` to `stop` (py-spy alongside when
    NUMBIND_BENCH_PYSPY names a directory)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self._spies: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        if os.environ.get("NUMBIND_BENCH_PROFILE"):  # bench._profiled: profile from here on
            for pid in self._pids.values():
                os.kill(pid, signal.SIGUSR1)
        self._start = {n: cpu_seconds(p) or 0.0 for n, p in self._pids.items()}
        where, spy = os.environ.get("NUMBIND_BENCH_PYSPY"), _py_spy()
        if not where or spy is None:
            return
        Path(where).mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            out = Path(where) / f"{name}.txt"
            argv = [spy, "record", "--format", "raw", "--rate", "100", "--nonblocking",
                    "-p", str(pid), "-o", str(out)]  # fmt: skip
            self._spies.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )

    def stop(self) -> dict[str, float]:
        used = {n: (cpu_seconds(p) or 0.0) - self._start.get(n, 0.0) for n, p in self._pids.items()}
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self._spies:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        return used
