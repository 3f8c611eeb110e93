"""Memory while streaming a large platform snapshot: publish N bindings, then sync the same
snapshot with 0.1% changed, through the SDK (tokens precomputed: tokenising 10 million numbers
takes the SDK about half an hour here and would measure the VOPRF, not memory).

Prints the peak resident memory of the client (this process) and of the registry (its own
process) beside the 300 MB budget, and the rates. Default N = 10,000,000 (~10 minutes);
`--rows` for a quicker look.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from numbind.sdk import Kind, PlatformClient, Record

from bench._harness import read_tokens, registry_process, write_tokens

BUDGET_MB = 300
BOUND = datetime.now(UTC) - timedelta(days=400)


def _records(n: int, key_id: str, tokens: Path, changed_every: int = 0) -> Iterator[Record]:
    """Deterministic bindings; with changed_every, every k-th one has a later bound_at.

    Tokens must be valid group elements, which cost ~20 us each to make: they are made
    once, on every core, into a file read back as the snapshot streams."""
    for i, token in zip(range(n), read_tokens(tokens), strict=False):
        bound = BOUND
        if changed_every and i % changed_every == 0:
            bound = BOUND + timedelta(days=1)
        yield Record(token, key_id, hashlib.sha256(b"acct" + token).digest(), bound, Kind.LOGIN)


def _peak_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="numbind-bench-tokens-") as tmp:
        tokens = await asyncio.to_thread(write_tokens, Path(tmp) / "tokens.bin", rows)
        await _run(rows, tokens)


async def _run(rows: int, tokens: Path) -> None:
    with registry_process() as server:
        bundle = server.add("platform", "bench-memory")
        async with PlatformClient(bundle) as client:
            key_id = await client.key_id()
            start = time.perf_counter()
            published = await client.publish_records(_records(rows, key_id, tokens), total=rows)
            t_pub = time.perf_counter() - start
            client_pub, server_pub = _peak_mb(), _peak_mb(server.proc.pid)
            start = time.perf_counter()
            summary = await client.sync_records(_records(rows, key_id, tokens, changed_every=1000))
            t_sync = time.perf_counter() - start
        client_all, server_all = _peak_mb(), _peak_mb(server.proc.pid)
    print(f"memory: {rows:,} bindings, one platform, SQLite")
    print(
        f"  publish   {published.inserted:>12,} inserted in {t_pub:7.1f} s ({rows / t_pub:,.0f}/s)"
    )
    print(
        f"  sync      {summary.published:>12,} changed, {summary.withdrawn:,} withdrawn, "
        f"{summary.buckets_listed:,} of {summary.buckets_total:,} buckets listed, "
        f"in {t_sync:.1f} s; converged: {summary.converged}"
    )
    for label, value in (
        ("client peak RSS after publish", client_pub),
        ("registry peak RSS after publish", server_pub),
        ("client peak RSS after sync", client_all),
        ("registry peak RSS after sync", server_all),
    ):
        print(
            f"  {label:<34} {value:8.0f} MB   budget {BUDGET_MB} MB   ratio {value / BUDGET_MB:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    asyncio.run(run(args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
