"""`numbind` under cProfile in every thread (the event loop and the database pool alike),
timed by each thread's CPU time: waits (for the store's one write connection, the GIL,
the network) are not counted, so what it shows is where the CPU goes.

    python -m bench._profiled OUT.pstats serve --data-dir D ...

The benches start a server this way when NUMBIND_BENCH_PROFILE names a directory: each
server writes its merged profile there when it stops (read it with `python -m pstats`).
SIGUSR1 clears what every thread has gathered so far, so a bench that sends it when its
measured window opens (bench.federation_cpu) gets a profile of that window, not of setup.
Bench-only: the server itself carries no profiling code.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import threading
import time
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profiled_run(original: Any) -> Any:
    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with _lock:
            _profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    return run


def _clear(signum: int, frame: Any) -> None:
    # No lock: a handler runs between the main thread's bytecodes, and a copy of the list
    # is enough (a thread starting now has nothing to clear yet).
    for profile in list(_profiles):
        profile.clear()


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGUSR1, _clear)
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    from numbind.cli import main as cli_main

    profile = cProfile.Profile(time.thread_time)
    _profiles.append(profile)
    sys.argv = ["numbind", *args]
    profile.enable()
    try:
        cli_main()
    except SystemExit:
        pass
    finally:
        profile.disable()
        with _lock:
            stats = pstats.Stats(_profiles[0])
            for other in _profiles[1:]:
                try:
                    stats.add(other)
                except TypeError:  # a profile that never ran
                    continue
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
