"""Token service throughput beside its physical floor.

Floor: raw libsodium crypto_scalarmult_ristretto255 calls per second on one core.
Server: Tokens.Evaluate elements/s over gRPC with mTLS at batch 1,000, requests in flight
on every core. Each element costs two scalar multiplications (the evaluation, and its term
of the batch-proof composite), so the ideal is cores x floor / 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import rbcl
from numbind.protocol import voprf
from numbind.protocol.bundle import Bundle
from numbind.sdk.channel import secure_channel
from numbind.sdk.tokenizer import Tokenizer
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

from bench._harness import registry_process, row

MULTS_PER_ELEMENT = 2


def scalarmult_floor(n: int = 20_000) -> float:
    scalar = rbcl.crypto_core_ristretto255_scalar_random()
    point = rbcl.crypto_core_ristretto255_random()
    start = time.perf_counter()
    for _ in range(n):
        rbcl.crypto_scalarmult_ristretto255(scalar, point)
    return n / (time.perf_counter() - start)


async def server_rate(bundle: Bundle, batch: int, requests: int, in_flight: int) -> float:
    blinded = [voprf.blind(f"+86138{i:08d}".encode(), voprf.MODE_VOPRF)[1] for i in range(batch)]
    request = tokens_pb2.EvaluateRequest(blinded_elements=blinded)
    async with secure_channel(bundle) as channel:
        stub = tokens_pb2_grpc.TokensStub(channel)
        await stub.Evaluate(request)  # warm up connection and key
        sem = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with sem:
                await stub.Evaluate(request)

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        return batch * requests / (time.perf_counter() - start)


async def sdk_rate(bundle: Bundle, n: int) -> float:
    numbers = [f"+86139{i:08d}" for i in range(n)]
    async with secure_channel(bundle) as channel:
        tok = Tokenizer(channel, batch_size=1000, in_flight=4)
        await tok.key()
        start = time.perf_counter()
        await tok.tokenize_e164(numbers)
        elapsed = time.perf_counter() - start
        tok.close()
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60, help="Evaluate calls of 1,000")
    parser.add_argument("--sdk-numbers", type=int, default=20_000)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"tokens (ristretto255-SHA512 VOPRF), {cores} cores")
    floor = scalarmult_floor()
    row("raw crypto_scalarmult_ristretto255, 1 core", floor, "mults/s")
    ideal = cores * floor / MULTS_PER_ELEMENT
    with registry_process() as server:
        bundle = server.add("platform", "bench-tokens")
        rate = asyncio.run(server_rate(bundle, 1000, args.requests, in_flight=2 * cores))
        row(
            "server Evaluate, batch 1,000, gRPC+mTLS",
            rate,
            "elem/s",
            ideal,
            f"{cores} cores x floor / {MULTS_PER_ELEMENT}",
        )
        sdk = asyncio.run(sdk_rate(bundle, args.sdk_numbers))
        row(
            "SDK end-to-end tokenisations (blind+verify+finalize)",
            sdk,
            "tok/s",
            ideal,
            "server ideal",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
