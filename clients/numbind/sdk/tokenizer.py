"""Tokenisation: number -> E.164 -> blinded element -> registry evaluation (with a batch
proof checked against the pinned key) -> unblind -> the 32-byte token k*HashToGroup(E.164).

The registry never sees a number; the client never sees the key. The token is the
unblinded element, not RFC 9497's Finalize hash of it, so the registry can re-key its
store when it rotates keys (numbind.protocol.voprf).

Work per number, on the client: one scalar multiplication to blind, two in the batch
proof's composites, one to unblind (the proof's own four are per batch, and the blinds
share one inversion). It runs on every core, pipelined with the round trips: while one
batch is on the wire, others are blinded or verified.

Threads or processes (measured on the 2-core reference machine, bench/tokens.py): libsodium
(rbcl, via ctypes) releases the GIL for each multiplication, and on an otherwise idle
machine two threads ran 1.9x one, as fast as two processes. On a busy machine (more
runnable processes than cores) threads fell to 0.2-0.4 of the ideal, as each of the dozen
libsodium calls per number must win the GIL back, while processes held 0.55. Threads stay
the default because a process pool (`spawn`) re-imports the caller's main module in every
worker, which would run an unguarded script again; ``processes=True`` is for programs
whose entry point is guarded by ``if __name__ == "__main__"`` (the numbind CLI's is).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
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
from numbind.sdk.retry import RetryPolicy, attempt_timeout, call_with_retry
from numbind.v1 import tokens_pb2, tokens_pb2_grpc

log = logging.getLogger(__name__)


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
    blinds: list[bytes],
    blinded: list[bytes],
    evaluated: list[bytes],
    proof: bytes,
) -> list[bytes]:
    try:
        # Verification deserialises (and so validates) every evaluated element itself.
        return voprf.voprf_unblind_batch(blinds, evaluated, blinded, proof, key.public_key)
    except voprf.VoprfError as exc:
        raise ProofError(
            f"registry evaluation under key {key.key_id} failed verification ({exc}); "
            "refusing its tokens"
        ) from None


class Tokenizer:
    """Tokenises numbers in pipelined, proof-checked batches, in input order.

    Without ``key_id`` it follows the registry's active key: every evaluation response
    names the active key, and after a rotation the next ``tokenize`` call fetches and pins
    the new one (no restart). Each call tokenises everything under one key, and every
    proof must verify under the key pinned for it, or the call fails with ProofError.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        key_id: str | None = None,
        batch_size: int = 1000,
        in_flight: int = 4,
        region: str = DEFAULT_REGION,
        retry: RetryPolicy | None = None,
        rpc_timeout: float | None = None,
        workers: int | None = None,
        processes: bool = False,
    ) -> None:
        if not 1 <= batch_size <= MAX_EVALUATE:
            raise ValueError(f"batch_size: got {batch_size}, want 1..{MAX_EVALUATE}")
        self._stub = tokens_pb2_grpc.TokensStub(channel)
        self._want_key = key_id
        self._batch = batch_size
        self._in_flight = max(1, in_flight)
        self._region = region
        self._retry = retry or RetryPolicy()
        self._timeout = rpc_timeout
        self._key: PinnedKey | None = None
        # Set when a response names another active key than the one pinned.
        self._rotated = False
        # Concurrent batches must not each fetch (and possibly pin different) keys.
        self._key_lock = asyncio.Lock()
        n = workers or os.cpu_count() or 1
        self._pool: Executor = (
            ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
            if processes
            else ThreadPoolExecutor(n, thread_name_prefix="numbind-voprf")
        )

    async def key(self) -> PinnedKey:
        """The pinned key: fetched once, and again after the registry rotated."""
        async with self._key_lock:
            if self._key is None or self._rotated:
                self._rotated = False
                before = self._key
                self._key = await self._fetch_key()
                if before is not None and before != self._key:
                    log.info("token key rotated: now tokenising under %s", self._key.key_id)
            return self._key

    async def refresh(self) -> PinnedKey:
        """Ask the registry for its keys now and pin the active one (or the ``key_id`` this
        tokenizer was made for): how a long job checks it still tokenises under the key
        the registry holds bindings under."""
        async with self._key_lock:
            self._rotated = False
            self._key = await self._fetch_key()
            return self._key

    async def _fetch_key(self) -> PinnedKey:
        resp: tokens_pb2.GetKeysResponse = await call_with_retry(
            lambda: self._stub.GetKeys(
                tokens_pb2.GetKeysRequest(), timeout=attempt_timeout(30, self._timeout)
            ),
            self._retry,
        )
        if resp.suite != voprf.SUITE_ID:
            raise Refused(f"registry suite {resp.suite!r}, this SDK speaks {voprf.SUITE_ID}")
        want = self._want_key or resp.active_key_id
        for k in resp.keys:
            if k.key_id == want:
                return PinnedKey(k.key_id, bytes(k.public_key))
        raise Refused(f"key_id: {want} is not a live key of this registry")

    def normalise(self, numbers: Iterable[str], start: int = 0) -> list[str]:
        return [to_e164(n, start + i, self._region) for i, n in enumerate(numbers)]

    async def _one_batch(self, key: PinnedKey, e164s: list[str]) -> list[TokenResult]:
        loop = asyncio.get_running_loop()
        inputs = [n.encode() for n in e164s]
        blinds, blinded = await loop.run_in_executor(self._pool, _blind_batch, inputs)
        request = tokens_pb2.EvaluateRequest(key_id=key.key_id, blinded_elements=blinded)
        resp: tokens_pb2.EvaluateResponse = await call_with_retry(
            lambda: self._stub.Evaluate(request, timeout=attempt_timeout(60, self._timeout)),
            self._retry,
        )
        if resp.key_id != key.key_id or len(resp.evaluated_elements) != len(blinded):
            raise ProofError(
                f"registry answered under key {resp.key_id!r} with "
                f"{len(resp.evaluated_elements)} elements for {len(blinded)}"
            )
        if self._want_key is None and resp.active_key_id not in ("", key.key_id):
            self._rotated = True
        tokens = await loop.run_in_executor(
            self._pool,
            _finish_batch,
            key,
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
        self,
        e164s: Sequence[str],
        *,
        key: PinnedKey | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[TokenResult]:
        """Like tokenize() for numbers already in E.164 form; all under one key (``key``,
        or the pinned key). ``on_done(n)`` is called as each batch of n numbers is
        tokenised (progress finer than the caller's batches)."""
        key = key or await self.key()
        sem = asyncio.Semaphore(self._in_flight)

        async def run(start: int, chunk: list[str]) -> list[TokenResult]:
            async with sem:
                try:
                    tokens = await self._one_batch(key, chunk)
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
