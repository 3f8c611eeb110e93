"""The demo's child processes: each in its own process group, so Ctrl-C reaches only the
demo, which then stops every group (the registry's worker processes too)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PY = sys.executable
STOP_SECONDS = 3.0


class DemoError(Exception):
    """Set-up failed; the message says where to look."""


@dataclass
class Children:
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def spawn(
        self, *args: str, log: Path | None = None, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        # Without a log file the child writes to our terminal (the app's demo codes).
        out = open(log, "ab") if log else None  # noqa: SIM115, ASYNC230 (a local file)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT if out else None,
                env={**os.environ, **(env or {})},
                # Its own process group: the terminal's Ctrl-C reaches only us, and we stop
                # the whole group (the registry's worker processes too).
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        self.procs.append(proc)
        return proc

    async def run_numbind(self, log: Path, *args: str) -> None:
        """`numbind ARGS` to completion, its output in log; DemoError if it fails."""
        proc = await self.spawn(PY, "-m", "numbind.cli", *args, log=log)
        if await proc.wait() != 0:
            raise DemoError(f"`numbind {' '.join(args[:2])}` failed; see {log}")
        self.procs.remove(proc)

    async def stop_all(self) -> None:
        """SIGTERM every child's process group, wait briefly, then SIGKILL what is left."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        waits = [asyncio.wait_for(p.wait(), STOP_SECONDS) for p in self.procs]
        await asyncio.gather(*waits, return_exceptions=True)
        for proc in self.procs:
            # Also after a clean exit: a group can outlive its leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 1.0)
        self.procs.clear()

    async def until_one_exits(self) -> None:
        await asyncio.wait(
            [asyncio.create_task(p.wait()) for p in self.procs],
            return_when=asyncio.FIRST_COMPLETED,
        )


def port_for(preferred: int, what: str) -> int:
    """`free_port`, saying so on stderr when ``preferred`` is taken: a demo left running
    (its terminal closed) holds the ports a new one was asked for, and the new one moving
    without a word left the user's open page on the old demo, whose sign-in no longer
    worked."""
    port = free_port(preferred)
    if preferred and port != preferred:
        print(
            f"numbind demo: port {preferred} is in use (another demo still running?); "
            f"the {what} listens on {port} instead",
            file=sys.stderr,
            flush=True,
        )
    return port


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free port. A port still in TIME_WAIT
    from a demo just stopped counts as free (the servers bind with SO_REUSEADDR too), so a
    second `make demo` keeps the addresses the first one printed."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False
