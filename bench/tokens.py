"""Token service and SDK tokenisation throughput beside their physical floor.

Floor: raw libsodium crypto_scalarmult_ristretto255 calls per second on one core.
Server: Tokens.Evaluate elements/s over gRPC with mTLS at batch 1,000, requests in flight
on every core. Each element costs two scalar multiplications (the evaluation, and its term
of the batch-proof composite), so the ideal is cores x floor / 2.
SDK: tokenisations/s end to end through Tokenizer. The client does four multiplications
per number (one to blind, two for its terms of the proof's composites, one to unblind; the
proof's own four are per batch), so its ideal is cores x floor / 4. The client's crypto
alone (no network; the server's answers precomputed) is also measured in a thread pool
and in a process pool (the SDK's default and its `processes=True`; sdk/tokenizer.py says
why threads are the default).
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
CLIENT_MULTS_PER_TOKEN = 4


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


Batch = tuple[list[bytes], list[bytes], list[bytes], list[bytes], bytes]


def _client_work(pk: bytes, batch: Batch) -> int:
    """What a Tokenizer does per batch, less the network: blind, verify, unblind. The
    verification uses the blinded elements the server evaluated beforehand (the fresh
    blinding is the same work, its result is just not what was evaluated)."""
    from numbind.sdk.tokenizer import PinnedKey, _blind_batch, _finish_batch

    inputs, blinds, blinded, evaluated, proof = batch
    _blind_batch(inputs)
    _finish_batch(PinnedKey("bench", pk), blinds, blinded, evaluated, proof)
    return len(inputs)


def client_crypto_rate(kind: str, batches: int = 16, size: int = 500) -> float:
    """Tokens/s of the client's crypto on every core, in threads or in processes."""
    import multiprocessing
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

    cores = os.cpu_count() or 1
    sk, pk = voprf.generate_key_pair()
    work: list[Batch] = []
    for i in range(batches):
        inputs = [f"+86137{i:04d}{j:04d}".encode() for j in range(size)]
        pairs = [voprf.blind(x, voprf.MODE_VOPRF) for x in inputs]
        blinded = [b for _, b in pairs]
        evaluated, proof = voprf.voprf_blind_evaluate(sk, pk, blinded)
        work.append((inputs, [r for r, _ in pairs], blinded, evaluated, proof))
    pool: Executor = (
        ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn"))
        if kind == "processes"
        else ThreadPoolExecutor(cores)
    )
    with pool:
        list(pool.map(abs, range(cores)))  # workers up before the clock starts
        start = time.perf_counter()
        done = sum(pool.map(_client_work, [pk] * batches, work))
        return done / (time.perf_counter() - start)


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
    client_ideal = cores * floor / CLIENT_MULTS_PER_TOKEN
    row(
        "SDK end-to-end tokenisations (blind+verify+unblind)",
        sdk,
        "tok/s",
        client_ideal,
        f"{cores} cores x floor / {CLIENT_MULTS_PER_TOKEN}",
    )
    for kind in ("threads", "processes"):
        row(
            f"SDK client crypto alone, {kind}",
            client_crypto_rate(kind),
            "tok/s",
            client_ideal,
            f"{cores} cores x floor / {CLIENT_MULTS_PER_TOKEN}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
