"""PublishBindings throughput, against the storage floor measured in the same run.

For each backend (SQLite always, with PRAGMA synchronous=FULL, the registry's setting, and
=NORMAL, the setting before issue 10; PostgreSQL when NUMBIND_TEST_DATABASE_URL is set —
that database is wiped), on a fresh store each time:

1. storage floor: the same rows straight through `registry.storage.bindings` (prepare +
   upsert, one transaction per batch), no gRPC, no validation;
2. gRPC+mTLS: PublishBindings to a registry started in-process on loopback, a few batches
   in flight;

and the ratio of each measure to the floor. Tokens are random valid group elements
(tokenising real numbers is the token service's benchmark, not this one).

and, for SQLite, the ratio of each measure with FULL to the same with NORMAL.

    .venv/bin/python -m bench.publish [--rows 200000] [--batch 10000] [--in-flight 4]
        [--synchronous both|FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from numbind.registry.domain.types import Binding, BindingKind, Token, now_us
from numbind.registry.storage import bindings as store
from numbind.registry.storage import migrate, principals
from numbind.registry.storage.db import Database
from numbind.registry.testing import running_registry
from numbind.sdk.channel import secure_channel
from numbind.v1 import common_pb2, platforms_pb2, platforms_pb2_grpc, tokens_pb2, tokens_pb2_grpc
from sqlalchemy import create_engine, text

from bench._harness import valid_token

PG_ENV = "NUMBIND_TEST_DATABASE_URL"
FLOOR_KEY_ID = "0123456789abcdef"
# (token, account_ref, bound_us, kind): the key id is the registry's, known at run time.
Item = tuple[bytes, bytes, int, int]


@dataclass(frozen=True)
class Backend:
    name: str
    # None: a fresh SQLite file in the run's scratch directory.
    url: str | None
    # SQLite's PRAGMA synchronous (registry.storage.db.SYNCHRONOUS).
    synchronous: str = "FULL"

    def fresh_url(self, scratch: Path) -> str:
        if self.url is None:
            return f"sqlite:///{scratch / 'store.db'}"
        reset_postgres(self.url)
        return self.url


@dataclass(frozen=True)
class Workload:
    batches: list[list[Item]]
    in_flight: int

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.batches)


Measure = Callable[[Backend, Workload, Path], Awaitable[float]]


@dataclass(frozen=True)
class Section:
    label: str
    measure: Measure


def make_workload(rows: int, batch: int, in_flight: int, seed: int = 4) -> Workload:
    rng = random.Random(seed)
    now = now_us()
    items: list[Item] = [
        (
            valid_token(rng.randbytes(16)),
            rng.randbytes(16),  # an HMAC-sized account_ref, as the SDK derives it
            now - rng.randrange(1, 10 * 365 * 86_400) * 1_000_000,
            1 + rng.randrange(5),
        )
        for _ in range(rows)
    ]
    return Workload([items[i : i + batch] for i in range(0, rows, batch)], in_flight)


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


async def storage_rate(backend: Backend, work: Workload, scratch: Path) -> float:
    """Rows/s through the storage layer alone: prepare + upsert, one transaction a batch."""
    db = Database(backend.fresh_url(scratch), synchronous=backend.synchronous)
    try:
        migrate.upgrade(db.write_engine)
        platform = db.transact(lambda s: principals.register(s, "platform", "bench").pk)
        batches = [
            [Binding(Token(FLOOR_KEY_ID, t), r, us, BindingKind(k)) for t, r, us, k in b]
            for b in work.batches
        ]
        now = now_us()
        start = time.perf_counter()
        for batch in batches:
            prepared = store.prepare(platform, batch, now)
            counts = db.transact(partial(store.upsert, batch=prepared))
            assert counts.inserted == len(batch), counts
        return work.rows / (time.perf_counter() - start)
    finally:
        db.close()


async def grpc_rate(backend: Backend, work: Workload, scratch: Path) -> float:
    """Rows/s published over gRPC+mTLS to an in-process registry, `in_flight` batches at once."""
    url = backend.fresh_url(scratch)
    async with running_registry(
        scratch / "registry", database_url=url, sqlite_synchronous=backend.synchronous
    ) as reg:
        bundle = reg.add_platform("bench")
        async with secure_channel(bundle) as channel:
            # Also warms the channel: the TLS handshake is not part of the measure.
            keys = await tokens_pb2_grpc.TokensStub(channel).GetKeys(tokens_pb2.GetKeysRequest())
            requests = [
                publish_request(f"bench-{i}", keys.active_key_id, batch)
                for i, batch in enumerate(work.batches)
            ]
            stub = platforms_pb2_grpc.PlatformsStub(channel)
            gate = asyncio.Semaphore(work.in_flight)

            async def send(request: platforms_pb2.PublishBindingsRequest) -> int:
                async with gate:
                    response = await stub.PublishBindings(request, timeout=120)
                return response.inserted

            start = time.perf_counter()
            inserted = await asyncio.gather(*(send(r) for r in requests))
            elapsed = time.perf_counter() - start
    assert sum(inserted) == work.rows, sum(inserted)
    return work.rows / elapsed


def publish_request(
    request_id: str, key_id: str, batch: Sequence[Item]
) -> platforms_pb2.PublishBindingsRequest:
    request = platforms_pb2.PublishBindingsRequest(request_id=request_id)
    for token, ref, bound_us, kind in batch:
        b = request.bindings.add()
        b.token.key_id = key_id
        b.token.value = token
        b.account_ref = ref
        b.bound_at.FromMicroseconds(bound_us)
        b.kind = common_pb2.BindingKind.ValueType(kind)
    return request


SDK_ROWS = 20_000


async def sdk_rate(backend: Backend, work: Workload, scratch: Path) -> float:
    """Rows/s through PlatformClient.publish from phone numbers: normalise, tokenise (VOPRF,
    proof checked), derive account refs, publish in pipelined batches. Tokenisation bounds
    it, so it runs on at most SDK_ROWS rows."""
    from datetime import UTC, datetime, timedelta

    from numbind.sdk import Kind, PlatformClient, Row

    n = min(work.rows, SDK_ROWS)
    bound = datetime.now(UTC) - timedelta(days=30)
    rows = [Row(f"+86138{i:08d}", f"account-{i}", bound, Kind.LOGIN) for i in range(n)]
    url = backend.fresh_url(scratch)
    async with running_registry(
        scratch / "registry", database_url=url, sqlite_synchronous=backend.synchronous
    ) as reg:
        bundle = reg.add_platform("bench")
        async with PlatformClient(bundle) as client:
            await client.key_id()  # connect and pin the key outside the measure
            start = time.perf_counter()
            summary = await client.publish(rows)
            elapsed = time.perf_counter() - start
    assert summary.inserted == n, summary
    return n / elapsed


# Each section is one row per backend; ratios are against the first (the floor).
SECTIONS: list[Section] = [
    Section("storage floor (direct)", storage_rate),
    Section("gRPC+mTLS end-to-end", grpc_rate),
    Section(f"SDK incl. tokenising ({SDK_ROWS // 1000}k)", sdk_rate),
]


def backends(synchronous: str = "both") -> list[Backend]:
    modes = ("FULL", "NORMAL") if synchronous == "both" else (synchronous,)
    found = [Backend(f"sqlite {m}", None, m) for m in modes]
    if os.environ.get(PG_ENV):
        found.append(Backend("postgresql", os.environ[PG_ENV]))
    return found


async def run(
    work: Workload, sections: Sequence[Section], synchronous: str = "both"
) -> list[tuple[str, str, float]]:
    results: list[tuple[str, str, float]] = []
    for backend in backends(synchronous):
        for section in sections:
            with tempfile.TemporaryDirectory(prefix="numbind-bench-") as scratch:
                rate = await section.measure(backend, work, Path(scratch))
            results.append((backend.name, section.label, rate))
            print(f"  {backend.name:<13} {section.label:<26} {rate:>10,.0f} rows/s", flush=True)
    return results


def print_table(results: list[tuple[str, str, float]]) -> None:
    print()
    print(f"{'backend':<13} {'measure':<26} {'rows/s':>10} {'vs floor':>9}")
    floor: dict[str, float] = {}
    for backend, label, rate in results:
        floor.setdefault(backend, rate)
        print(f"{backend:<13} {label:<26} {rate:>10,.0f} {rate / floor[backend]:>9.2f}")
    rates = {(b, label): rate for b, label, rate in results}
    labels = [label for b, label, _ in results if b == "sqlite FULL"]
    if labels and any(b == "sqlite NORMAL" for b, _, _ in results):
        print()
        print(
            f"{'SQLite synchronous':<13} {'measure':<26} {'FULL':>10} {'NORMAL':>10} {'ratio':>6}"
        )
        for label in labels:
            full, normal = rates[("sqlite FULL", label)], rates[("sqlite NORMAL", label)]
            print(f"{'':<13} {label:<26} {full:>10,.0f} {normal:>10,.0f} {full / normal:>6.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument(
        "--synchronous",
        choices=("both", "FULL", "NORMAL"),
        default="both",
        help="SQLite's PRAGMA synchronous: FULL (the registry's), NORMAL, or both (default)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 10_000 or args.rows < 1 or args.in_flight < 1:
        parser.error("want --rows >= 1, --batch 1..10000, --in-flight >= 1")
    work = make_workload(args.rows, args.batch, args.in_flight)
    print(
        f"PublishBindings: {work.rows:,} rows in batches of {args.batch:,}, "
        f"{args.in_flight} in flight, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    if not os.environ.get(PG_ENV):
        print(f"  (PostgreSQL skipped: set {PG_ENV}; that database is wiped)")
    print_table(asyncio.run(run(work, SECTIONS, args.synchronous)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
