"""GetKeys p99 of one principal while another sends oversize PublishBindings (issue 10).

For each mode the registry runs in its own process (`numbind serve`):

- "limits off" (NUMBIND_REQUEST_LIMITS=0): as before issue 10, gRPC accepts any message up
  to 64 MB and the registry parses it, then refuses the batch as too big;
- "limits on" (the default): gRPC accepts nothing above the largest legal request
  (numbind.protocol.limits.MAX_RECEIVE_BYTES) and the registry refuses a request above its
  RPC's own limit unparsed.

In each, a victim platform measures GetKeys latency alone (the floor: the p99 unloaded),
then while an attacker platform, in another process, keeps `--concurrency` oversize
PublishBindings (`--mb` MB each) in flight; the figure is that p99, beside the floor and
the ratio.

    .venv/bin/python -m bench.oversize [--mb 60] [--concurrency 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import grpc
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.v1 import common_pb2, platforms_pb2, tokens_pb2, tokens_pb2_grpc

from bench._harness import registry_process, row

PUBLISH = "/numbind.v1.Platforms/PublishBindings"


def oversize_request(megabytes: int) -> bytes:
    """A well-formed PublishBindings of about `megabytes` MB: many bindings, as a buggy
    or hostile platform would send (far over the 10,000 a request may hold)."""
    binding = common_pb2.Binding(
        token=common_pb2.Token(key_id="0" * 16, value=b"\x01" * 32),
        account_ref=b"a" * 64,
        kind=common_pb2.BINDING_KIND_LOGIN,
    )
    binding.bound_at.FromSeconds(1_700_000_000)
    one = binding.SerializeToString()
    n = megabytes * 1_000_000 // (len(one) + 3)
    request = platforms_pb2.PublishBindingsRequest(request_id="oversize")
    request.bindings.extend([binding] * n)
    return request.SerializeToString()


async def _attack(bundle_dir: str, megabytes: int, concurrency: int, stop: EventType) -> None:
    raw = oversize_request(megabytes)
    async with secure_channel(Bundle.load(Path(bundle_dir))) as channel:
        # Bytes in, bytes out: no client-side work per call.
        send: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(PUBLISH)

        async def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError):  # refused, as it must be
                    await send(raw, timeout=60)

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def attack(bundle_dir: str, megabytes: int, concurrency: int, stop: EventType) -> None:
    asyncio.run(_attack(bundle_dir, megabytes, concurrency, stop))


# A GetKeys slower than this counts as this slow (and is reported as timed out).
CUTOFF_S = 5.0


async def latencies(bundle: Bundle, calls: int) -> tuple[list[float], int]:
    """GetKeys latencies in ms, and how many hit the cutoff."""
    async with secure_channel(bundle) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        await stub.GetKeys(tokens_pb2.GetKeysRequest())  # the handshake is not measured
        out = []
        late = 0
        for _ in range(calls):
            start = time.perf_counter()
            try:
                await stub.GetKeys(tokens_pb2.GetKeysRequest(), timeout=CUTOFF_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                late += 1
            out.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.005)
        return out, late


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def measure(mode: str, limits: bool, args: argparse.Namespace) -> tuple[float, float]:
    env = {"NUMBIND_REQUEST_LIMITS": "1" if limits else "0"}
    with registry_process(env) as server:
        victim = server.add("platform", "victim")
        attacker = server.add("platform", "attacker")
        alone, _ = asyncio.run(latencies(victim, args.calls))
        floor = p99(alone)
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        proc = ctx.Process(
            target=attack, args=(str(attacker.directory), args.mb, args.concurrency, stop)
        )
        proc.start()
        try:
            time.sleep(args.warmup)  # the attacker builds its request and gets going
            under, late = asyncio.run(latencies(victim, args.calls))
            loaded = p99(under)
        finally:
            stop.set()
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    row(f"{mode}: GetKeys p99, unloaded (floor)", floor, "ms")
    row(
        f"{mode}: GetKeys p99 under {args.concurrency} x {args.mb} MB",
        loaded,
        "ms",
        floor,
        "unloaded p99",
    )
    if late:
        print(f"    ({late} of {args.calls} calls timed out after {CUTOFF_S:g} s)", flush=True)
    return floor, loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(
        f"GetKeys p99 beside another principal's oversize PublishBindings: {args.calls} calls "
        f"each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    measure("limits off (before)", False, args)
    measure("limits on (now)", True, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
