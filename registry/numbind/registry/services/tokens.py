"""The token service: validate blinded elements, enforce quotas, evaluate with a proof.

Evaluation is CPU-bound and must never run on the event loop. libsodium's scalar
multiplication releases the GIL (rbcl calls it through ctypes: two threads ran 1.9x one), but
the Python between the calls (hashing, encoding, validation) does not, and under load it then
contends with the event loop for the GIL. So evaluation runs in a pool of worker processes,
one per core, started with `spawn` (forking a process that runs grpc is unsafe); the
composition root owns the pool and shares it with the store re-key. Each task carries its
32-byte secret, so rotation needs no pool restart.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from numbind.protocol import voprf
from numbind.protocol.limits import MAX_EVALUATE as MAX_BATCH
from numbind.registry.domain.quota import DAY_SECONDS, Quotas
from numbind.registry.domain.types import Principal, Role
from numbind.registry.errors import InvalidArgument, ResourceExhausted
from numbind.registry.keys import KeyRing, TokenKey
from numbind.registry.storage import quota, usage
from numbind.registry.storage.db import Database, Session
from numbind.registry.workers import in_workers

# How stale this process's view of the keys may get when another process rotates.
KEYS_MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True)
class Evaluation:
    key_id: str
    evaluated: list[bytes]
    proof: bytes
    # The active key now: how a client evaluating under an older key learns of a rotation.
    active_key_id: str


def validate_batch_size(elements: list[bytes]) -> None:
    if not elements:
        raise InvalidArgument("blinded_elements: got 0 elements, want 1..4096")
    if len(elements) > MAX_BATCH:
        raise InvalidArgument(
            f"blinded_elements: got {len(elements)} elements, want at most {MAX_BATCH}"
        )


def validate_elements(elements: list[bytes]) -> None:
    """Refuse the batch unless every element is a valid encoding (naming the first bad
    index). Runs before any quota is taken, so a refused batch writes nothing; in a worker
    process, as decoding 4,096 elements is too much work for the event loop."""
    for i, element in enumerate(elements):
        try:
            voprf.deserialize_element(element)
        except voprf.DeserializeError as exc:
            raise InvalidArgument(f"blinded_elements[{i}]: {exc}") from None


def evaluate_batch(
    secret: bytes, public: bytes, elements: list[bytes]
) -> tuple[list[bytes], bytes]:
    """Evaluate elements `validate_elements` passed, with one proof.

    Runs in a worker process: module-level and free of any state but its arguments.
    """
    return voprf.voprf_blind_evaluate(secret, public, elements, prevalidated=True)


class QuotaGate:
    """Per-principal evaluation quotas, shared by every registry process on the store: one
    token-bucket row per principal and the day's usage row, taken together in one
    transaction (storage.quota). A federation's token service lets a member's calls
    through ungated: the member gates each of its platforms itself (one gate per platform,
    not one for every platform of a member together)."""

    def __init__(self, db: Database, quotas: Quotas) -> None:
        self._db = db
        self._quotas = quotas
        # Calls this process refused for quota, by principal (role, name: names are unique
        # per role) for /metrics. Counted on the event loop, not in a database thread.
        self.refusals: Counter[tuple[str, str]] = Counter()

    async def take(self, caller: Principal, n: int) -> int:
        """Take `n` from the caller's quota (ResourceExhausted if it has not); the day."""
        now = time.time()
        day = int(now // DAY_SECONDS)
        if caller.role != Role.REGISTRY:
            self._quotas.check_batch(n)
            take = functools.partial(self._take, caller=caller, n=n, now=now, day=day)
            try:
                await self._db.run(take)
            except ResourceExhausted:
                self.refusals[(caller.role, caller.name)] += 1
                raise
        return day

    def _take(self, session: Session, *, caller: Principal, n: int, now: float, day: int) -> None:
        # Raising rolls back whatever the take changed.
        q = self._quotas
        taken = quota.take(
            session,
            caller.pk,
            n,
            now_us=int(now * 1_000_000),
            day=day,
            rate=q.rate,
            burst=float(q.burst),
            daily_cap=q.daily_cap,
        )
        if not taken.granted:
            raise q.refusal(n, taken.tokens, taken.used_today, now)

    async def refund(self, caller: Principal, day: int, n: int) -> None:
        """Give back what `take` took for work that was then refused."""
        if caller.role != Role.REGISTRY:
            burst = float(self._quotas.burst)
            await self._db.run(lambda s: quota.refund(s, caller.pk, n, day=day, burst=burst))

    async def record(self, caller: Principal, day: int, n: int) -> None:
        """Count work done for an ungated caller (gated ones were counted as they took)."""
        if caller.role == Role.REGISTRY:
            await self._db.run(lambda s: usage.add(s, caller.pk, day, tokens=n))


class TokenSource(Protocol):
    """What the Tokens servicer serves: this registry's own token service, or (on a
    federation member) the federation's, forwarded (numbind.registry.federation.forward)."""

    async def keys(self) -> tuple[str, list[TokenKey]]: ...

    async def evaluate(
        self, caller: Principal, key_id: str, elements: list[bytes]
    ) -> Evaluation: ...


class TokenService:
    def __init__(self, db: Database, keys: KeyRing, gate: QuotaGate, pool: Executor) -> None:
        self._db = db
        self._keys = keys
        self._gate = gate
        self._pool = pool

    async def _fresh(self) -> None:
        # Keys change in whichever process ran the admin call; others catch up within this.
        if self._keys.older_than(KEYS_MAX_AGE_SECONDS):
            await asyncio.to_thread(self._keys.reload)

    async def keys(self) -> tuple[str, list[TokenKey]]:
        await self._fresh()
        return self._keys.active().key_id, self._keys.live()

    async def evaluate(self, caller: Principal, key_id: str, elements: list[bytes]) -> Evaluation:
        validate_batch_size(elements)
        await self._fresh()
        key = self._keys.for_evaluation(key_id)
        # Validate, then act: a bad batch is refused before it takes any quota.
        await in_workers(self._pool, validate_elements, elements)
        day = await self._gate.take(caller, len(elements))
        assert key.secret is not None
        evaluated, proof = await in_workers(
            self._pool, evaluate_batch, key.secret, key.public_key, elements
        )
        await self._gate.record(caller, day, len(elements))
        return Evaluation(key.key_id, evaluated, proof, self._keys.active().key_id)
