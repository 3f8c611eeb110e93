"""Shared bench plumbing: a registry in its own process (so its CPU is its own, as in
production), bundles for it, and a uniform way to print a figure beside its floor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def numbind(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [PY, "-m", "numbind.cli", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


@dataclass
class ServerProcess:
    data: Path
    listen: str
    proc: subprocess.Popen[bytes]
    # What the CLI needs besides the data dir to reach the same store (the database URL).
    env: dict[str, str] = field(default_factory=dict)

    def add(self, role: str, name: str) -> Bundle:
        out = self.data.parent / "bundles" / name
        extra = ["--category", "other"] if role == "platform" else []
        numbind(
            "admin",
            f"add-{role}",
            name,
            "--display-name",
            name,
            *extra,
            "--out",
            str(out),
            "--data-dir",
            str(self.data),
            "--registry",
            self.listen,
            env=self.env,
        )
        return Bundle.load(out)


# Quotas no bench run meets, and quiet logs.
BENCH_ENV = {
    "NUMBIND_QUOTA_RATE": "10000000",
    "NUMBIND_QUOTA_BURST": "10000000",
    "NUMBIND_QUOTA_DAILY_CAP": "1000000000",
    "NUMBIND_LOG_LEVEL": "WARNING",
}


def serve(
    data: Path,
    listen: str,
    log: Path,
    env: dict[str, str],
    *,
    module: list[str] | None = None,
    name: str = "",
) -> subprocess.Popen[bytes]:
    """`numbind serve` of `data` at `listen` in a child process, its output in `log`.
    `module` runs `serve` (default `numbind.cli`, or with NUMBIND_BENCH_STATEMENTS=OUT.json
    the statement timer bench._statements writing OUT.json, OUT-NAME.json given a `name`:
    one file per server when several run)."""
    if module is None:
        timed = os.environ.get("NUMBIND_BENCH_STATEMENTS")
        module = ["numbind.cli"]
        if timed:
            out = Path(timed)
            if name:
                out = out.with_name(f"{out.stem}-{name}{out.suffix}")
            module = ["bench._statements", str(out)]
    with open(log, "wb") as out_file:
        return subprocess.Popen(
            [PY, "-m", *module, "serve", "--data-dir", str(data), "--listen", listen],
            stdout=out_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


def wait_listening(
    started: dict[str, tuple[subprocess.Popen[bytes], Path]], seconds: float
) -> None:
    """Until each server's log says it listens; RuntimeError with the log of one that exits
    or is not up within `seconds` (named by its key)."""
    deadline = time.monotonic() + seconds
    for name, (proc, log) in started.items():
        while "listening on" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {log.read_text()}")
            time.sleep(0.1)


@contextmanager
def registry_process(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`numbind serve` in a child process with a fresh data dir; generous quotas."""
    env = {**BENCH_ENV, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="numbind-bench-") as tmp:
        data = Path(tmp) / "data"
        listen = f"127.0.0.1:{free_port()}"
        numbind("admin", "init", "--data-dir", str(data), "--registry", listen, env=env)
        log = Path(tmp) / "serve.log"
        proc = serve(data, listen, log, env)
        try:
            wait_listening({"serve": (proc, log)}, 30)
            yield ServerProcess(data, listen, proc, env)
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def row(
    label: str,
    value: float,
    unit: str,
    floor: float | None = None,
    floor_label: str = "",
    goal: str = "",
) -> None:
    """`goal`: appended as is (a target's met/MISSED mark)."""
    text = f"  {label:<46} {value:>14,.0f} {unit}"
    if floor:
        text += f"   floor {floor:>12,.0f} ({floor_label})   ratio {value / floor:.2f}"
    print(text + goal, flush=True)


def add_all(
    server: ServerProcess, principals: list[tuple[str, str]], jobs: int = 4
) -> list[Bundle]:
    """`server.add(role, name)` for each (role, name), `jobs` CLI processes at a time (each
    is mostly interpreter start-up), bundles in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda p: server.add(*p), principals))


def valid_token(seed: bytes) -> bytes:
    """A token the registry accepts (a canonical, non-identity ristretto255 element),
    derived from `seed`; ~20 us each, so big runs precompute them with `write_tokens`."""
    return voprf.hash_to_group(seed, voprf.MODE_VOPRF)


def _token_chunk(start: int, stop: int) -> bytes:
    return b"".join(valid_token(i.to_bytes(8, "big")) for i in range(start, stop))


def write_tokens(path: Path, n: int, chunk: int = 100_000) -> Path:
    """valid_token(i) for i < n, 32 bytes each, into `path`, on every core."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    starts = range(0, n, chunk)
    with (
        ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool,
        open(path, "wb") as out,
    ):
        for blob in pool.map(_token_chunk, starts, [min(n, a + chunk) for a in starts]):
            out.write(blob)
    return path


def read_tokens(path: Path) -> Iterator[bytes]:
    """The tokens of `write_tokens`, in order, read a buffer at a time (flat memory)."""
    with open(path, "rb") as f:
        while block := f.read(32 * 4096):
            for i in range(0, len(block), 32):
                yield block[i : i + 32]
