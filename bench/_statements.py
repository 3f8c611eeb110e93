"""`numbind` with a statement timer: wall time, calls and rows per SQL statement text, from
the first revocation a report writes (the reissue window) until the server stops.

    python -m bench._statements OUT.json serve --data-dir D ...   (a server, timed)
    python -m bench._statements --show OUT.json [N]               (the N slowest, summed)

The benches start a server this way when NUMBIND_BENCH_STATEMENTS names a file
(bench._harness.serve; OUT-N.json for each of several servers, each window opening at its
own first revocation, so a process that only serves streams and acks records nothing).
Timed: every statement through SQLAlchemy (an executemany is one call of many rows) and
every COPY through psycopg (storage.pgcopy),
each from its start to its last row, so waits for locks count; statements run
concurrently by the pool's threads add up past the wall time, and the holder queries
bench.reissue sends after the last ack are in the window too. Written every second and
when the server stops. Bench-only: the server itself carries no timing code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_stats: dict[str, list[float]] = {}
_lock = threading.Lock()
_open = [False]
# The report's first write: statements before it (setup, loading) are not counted.
_WINDOW_OPENS = "INSERT INTO revocations"


def _record(statement: str, seconds: float, rows: int) -> None:
    with _lock:
        if not _open[0]:
            if _WINDOW_OPENS not in statement:
                return
            _open[0] = True
        entry = _stats.setdefault(" ".join(statement.split())[:120], [0, 0, 0.0])
        entry[0] += 1
        entry[1] += rows
        entry[2] += seconds


def _install() -> None:
    import psycopg
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        seconds = time.perf_counter() - conn.info["bench_t0"].pop()
        _record(statement, seconds, len(params) if many and params is not None else 1)

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    copy = psycopg.Cursor.copy

    @contextlib.contextmanager
    def timed_copy(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        t0 = time.perf_counter()
        with copy(self, statement, *args, **kwargs) as c:
            yield c
        _record(str(statement), time.perf_counter() - t0, 1)

    psycopg.Cursor.copy = timed_copy  # type: ignore[method-assign]


def _dump(out: str) -> None:
    with _lock:
        if not _open[0]:
            return
        items = sorted(_stats.items(), key=lambda kv: -kv[1][2])
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(items, f)
    os.replace(tmp, out)


def show(path: str, top: int = 20) -> None:
    with open(path) as f:
        items = json.load(f)
    print(f"  statements: {sum(v[2] for _, v in items):.2f} s in all, the {top} slowest:")
    for text, (calls, rows, seconds) in items[:top]:
        print(f"  {seconds:8.3f} s {int(calls):6d} calls {int(rows):7d} rows  {text}")


def main() -> None:
    if sys.argv[1] == "--show":
        show(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20)
        return
    out, args = sys.argv[1], sys.argv[2:]
    _install()

    def every_second() -> None:
        while True:
            time.sleep(1.0)
            _dump(out)

    threading.Thread(target=every_second, daemon=True).start()
    from numbind.cli import main as cli_main

    sys.argv = ["numbind", *args]
    try:
        cli_main()
    except SystemExit:
        pass
    finally:
        _dump(out)


if __name__ == "__main__":
    main()
