"""Tokenisation: number -> E.164 -> blinded element -> registry evaluation (with a batch
proof checked against the pinned key) -> unblind -> 64-byte token.

The registry never sees a number; the client never sees the key.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from numbind.protocol import voprf
from numbind.protocol.limits import MAX_EVALUATE
from numbind.sdk.errors import (
    NumbindClientError,
    ProofError,
    Refused,
    located,
    offset_positions,
)
from numbind.sdk.phone import DEFAULT_REGION, to_e164
from numbind.sdk.retry import RetryPolicy, call_with_retry
from numbind.v1 import tokens_pb2, tokens_pb2_grpc


@dataclass(frozen=True)
class TokenResult:
    e164: str
    token: bytes
    key_id: str


@dataclass(frozen=True)
class PinnedKey:
    key_id: str
    public_key: bytes


def _blind_batch(inputs: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    blinds, blinded = [], []
    for data in inputs:
        b, e = voprf.blind(data, voprf.MODE_VOPRF)
        blinds.append(b)
        blinded.append(e)
    return blinds, blinded


def _finish_batch(
    key: PinnedKey,
    inputs: list[bytes],
    blinds: list[bytes],
    blinded: list[bytes],
    evaluated: list[bytes],
    proof: bytes,
) -> list[bytes]:
    try:
        # Verification deserialises (and so validates) every evaluated element itself.
        return voprf.voprf_finalize_batch(inputs, blinds, evaluated, blinded, proof, key.public_key)
    except voprf.VoprfError as exc:
        raise ProofError(
            f"registry evaluation under key {key.key_id} failed verification ({exc}); "
            "refusing its tokens"
        ) from None


class Tokenizer:
    """Tokenises numbers in pipelined, proof-checked batches, in input order."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        key_id: str | None = None,
        batch_size: int = 1000,
        in_flight: int = 4,
        region: str = DEFAULT_REGION,
        retry: RetryPolicy | None = None,
        workers: int | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_EVALUATE:
            raise ValueError(f"batch_size: got {batch_size}, want 1..{MAX_EVALUATE}")
        self._stub = tokens_pb2_grpc.TokensStub(channel)
        self._want_key = key_id
        self._batch = batch_size
        self._in_flight = max(1, in_flight)
        self._region = region
        self._retry = retry or RetryPolicy()
        self._key: PinnedKey | None = None
        # Concurrent batches must not each fetch (and possibly pin different) keys.
        self._key_lock = asyncio.Lock()
        # Blinding and finalising are scalar multiplications that release the GIL.
        self._pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)

    async def key(self) -> PinnedKey:
        """Fetch the key once and pin it; every later proof must verify under it."""
        async with self._key_lock:
            return await self._fetch_key()

    async def _fetch_key(self) -> PinnedKey:
        if self._key is None:
            resp: tokens_pb2.GetKeysResponse = await call_with_retry(
                lambda: self._stub.GetKeys(tokens_pb2.GetKeysRequest(), timeout=30), self._retry
            )
            if resp.suite != voprf.SUITE_ID:
                raise Refused(f"registry suite {resp.suite!r}, this SDK speaks {voprf.SUITE_ID}")
            want = self._want_key or resp.active_key_id
            for k in resp.keys:
                if k.key_id == want:
                    self._key = PinnedKey(k.key_id, bytes(k.public_key))
                    break
            else:
                raise Refused(f"key_id: {want} is not a live key of this registry")
        return self._key

    def normalise(self, numbers: Iterable[str], start: int = 0) -> list[str]:
        return [to_e164(n, start + i, self._region) for i, n in enumerate(numbers)]

    async def _one_batch(self, e164s: list[str]) -> list[TokenResult]:
        key = await self.key()
        loop = asyncio.get_running_loop()
        inputs = [n.encode() for n in e164s]
        blinds, blinded = await loop.run_in_executor(self._pool, _blind_batch, inputs)
        request = tokens_pb2.EvaluateRequest(key_id=key.key_id, blinded_elements=blinded)
        resp: tokens_pb2.EvaluateResponse = await call_with_retry(
            lambda: self._stub.Evaluate(request, timeout=60), self._retry
        )
        if resp.key_id != key.key_id or len(resp.evaluated_elements) != len(blinded):
            raise ProofError(
                f"registry answered under key {resp.key_id!r} with "
                f"{len(resp.evaluated_elements)} elements for {len(blinded)}"
            )
        tokens = await loop.run_in_executor(
            self._pool,
            _finish_batch,
            key,
            inputs,
            blinds,
            blinded,
            list(resp.evaluated_elements),
            bytes(resp.proof),
        )
        return [TokenResult(n, t, key.key_id) for n, t in zip(e164s, tokens, strict=True)]

    async def tokenize(self, numbers: Sequence[str]) -> list[TokenResult]:
        """Tokens for numbers, in input order. InvalidNumber names the first bad number by
        its 1-based position."""
        e164s = self.normalise(numbers)
        return await self.tokenize_e164(e164s)

    async def tokenize_e164(
        self, e164s: Sequence[str], *, on_done: Callable[[int], None] | None = None
    ) -> list[TokenResult]:
        """Like tokenize() for numbers already in E.164 form. ``on_done(n)`` is called as
        each batch of n numbers is tokenised (progress finer than the caller's batches)."""
        await self.key()
        sem = asyncio.Semaphore(self._in_flight)

        async def run(start: int, chunk: list[str]) -> list[TokenResult]:
            async with sem:
                try:
                    tokens = await self._one_batch(chunk)
                except NumbindClientError as exc:
                    where = offset_positions(start, len(chunk))
                    raise located(exc, "blinded_elements", "number", where) from None
            if on_done is not None:
                on_done(len(chunk))
            return tokens

        starts = range(0, len(e164s), self._batch)
        results = await asyncio.gather(*(run(i, list(e164s[i : i + self._batch])) for i in starts))
        return [r for chunk in results for r in chunk]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
