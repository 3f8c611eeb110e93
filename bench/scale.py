"""The registry on PostgreSQL at scale (issue 14 item 5), each figure beside its floor.

1. Publish into hash-partitioned bindings at SIZE rows (--sizes; --full: 1M and 10M).
   The table is prefilled to SIZE by the server itself (bench._fill), and so is a bare
   table with the same columns, keys, indexes and partitions (floor_bindings). Then the
   same --measure new rows (random tokens, batches of 10,000 = one PublishBindings call)
   are written three ways into the registry's table and its floor twin:
   - registry: PublishBindings over gRPC + mTLS into process A, 4 calls in flight;
   - storage: the registry's storage write path in this process (storage.bindings
     prepare + upsert, a transaction per batch);
   - floor: the same rows by COPY, a transaction per batch, into floor_bindings,
     alternating batch by batch with the storage path (same cache, load, checkpoints);
     for reference also by multi-row INSERTs.
   Then a fifth of the storage path's rows again, unchanged (a nightly snapshot: the
   existing-row lookup path), and that lookup alone over all of them.
2. Holder QueryBindings p50/p99 at the largest size (--queries sequential calls, numbers
   with 10 bindings each).
3. Cross-process event latency: a carrier reports one REISSUED number at a time to
   process A; the platform streams from process B. p50/p99 over --events.
4. Quota accuracy: three processes with a tight token quota; one principal asks all three
   for --quota-seconds; granted / configured (burst + rate x seconds).
5. The reissue bench (bench/reissue.py: 20 platforms; --full: 10,000 numbers, 100,000
   orders over 1,000,000 bindings) on PostgreSQL and on SQLite, one after the other.

PostgreSQL: --database-url, else NUMBIND_BENCH_DATABASE_URL, else the local
numbind_bench database. Its public schema is dropped and rebuilt (not with --storage-only
--keep, which adds to an earlier run's tables). A server that answers without that database
gets it created; a server that does not answer: skipped.

    .venv/bin/python -m bench.scale [--full] [--sizes N,N] [--measure N] [--events N]
    .venv/bin/python -m bench.scale --storage-only [--keep] --sizes 10000000 --measure 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from numbind.registry.domain.types import Binding, BindingKind, Token
from numbind.registry.storage import bindings as store
from numbind.registry.storage.db import Database
from sqlalchemy import create_engine, text

from bench import _fill, _live
from bench._harness import BENCH_ENV, add_all, row
from bench._pgfloor import reachable, reset_schema
from bench.reissue import PLATFORMS, Plan, active_key_id, load, percentile

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/numbind_bench"
BATCH = 10_000
QUOTA_RATE, QUOTA_BURST = 10, 100
PARTS = ("publish", "queries", "latency", "quota", "reissue")
# Issue 14's target for the publish paths: at least this share of their COPY floor once the
# table holds this many rows (the --full size); below it the figures carry no mark.
TARGETS = {"publish ratio": 0.5}
TARGET_ROWS = 10_000_000


def publish_goal(rate: float, floor: float, at: int) -> str:
    """The met/MISSED mark for a publish path's ratio at `at` rows ("" below the size)."""
    if at < TARGET_ROWS or floor <= 0:
        return ""
    limit = TARGETS["publish ratio"]
    return f"   target >= {limit:.2f}: {'met' if rate / floor >= limit else 'MISSED'}"


def _store_key(url: str) -> tuple[str, list[int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            key = conn.execute(text("SELECT store_key_id FROM store_state")).scalar_one()
            key = key or "0000000000000001"  # a store with no token key yet (storage only)
            pks = conn.execute(
                text("SELECT pk FROM principals WHERE role = 'platform' ORDER BY pk")
            ).scalars()
            return str(key), list(pks)
    finally:
        engine.dispose()


def _storage_and_floor(
    url: str, conn: Any, batches: list[list[Binding]], platform_pk: int
) -> tuple[float, float, float, list[list[tuple[Any, ...]]]]:
    """Per batch: storage.bindings.prepare + upsert (a transaction), and the floor's COPY of
    the same prepared rows into floor_bindings (a transaction), alternating which goes first,
    so both meet the same cache, checkpoints and load. Seconds in the storage path, in its
    prepare (Python: digests, sort), in the floor; and the prepared rows."""
    db = Database(url)
    prepared: list[list[tuple[Any, ...]]] = []
    storage_s = in_prepare = floor_s = 0.0
    try:
        for i, bindings in enumerate(batches):
            t0 = time.perf_counter()
            batch = store.prepare(platform_pk, bindings, time.time_ns() // 1000)
            in_prepare += time.perf_counter() - t0
            prepared.append(batch.rows)

            def storage(b: store.PreparedBatch = batch) -> float:
                t = time.perf_counter()
                counts = db.transact(lambda s: store.upsert(s, b))
                assert counts.inserted == len(b.rows), counts
                return time.perf_counter() - t

            def floor(b: store.PreparedBatch = batch) -> float:
                return _fill.copy_rows(conn, _fill.FLOOR_TABLE, [b.rows])

            if i % 2:
                floor_s += floor()
                storage_s += storage()
            else:
                storage_s += storage()
                floor_s += floor()
        return storage_s + in_prepare, in_prepare, floor_s, prepared
    finally:
        db.close()


def _republish(url: str, batches: list[list[Binding]], platform_pk: int) -> float:
    """The same bindings published again (a platform's nightly snapshot): every row exists,
    nothing changes. Seconds."""
    db = Database(url)
    try:
        start = time.perf_counter()
        for bindings in batches:
            batch = store.prepare(platform_pk, bindings, time.time_ns() // 1000)
            counts = db.transact(lambda s, b=batch: store.upsert(s, b))  # type: ignore[misc]
            assert counts.unchanged == len(bindings), counts
        return time.perf_counter() - start
    finally:
        db.close()


def _lookup_seconds(url: str, batches: list[list[tuple[Any, ...]]], platform_pk: int) -> float:
    """The upsert's existing-row lookup alone (storage.bindings._lookup, what a batch with a
    stored row takes), for the same tokens, now present: a read per batch."""
    db = Database(url)
    columns = ("pk", "token", "account_ref", "bound_us", "kind", "state", "updated_us")
    try:
        start = time.perf_counter()
        for rows in batches:
            tokens = sorted({r[2] for r in rows})
            found = db.transact(
                lambda s, t=tokens: list(store._lookup(s.connection(), platform_pk, columns, t))  # type: ignore[misc]
            )
            assert len(found) == len(rows), len(found)
        return time.perf_counter() - start
    finally:
        db.close()


def _new_bindings(rng: random.Random, n: int, key_id: str, tag: bytes) -> list[list[Binding]]:
    rows = [
        Binding(Token(key_id, rng.randbytes(32)), tag + i.to_bytes(8, "big"), 1, BindingKind.LOGIN)
        for i in range(n)
    ]
    return [rows[i : i + BATCH] for i in range(0, n, BATCH)]


async def _grpc_publish(plan: Plan, bundles: list[Any], key_id: str) -> float:
    start = time.perf_counter()
    inserted = await load(plan, bundles, key_id, 4)
    assert inserted == plan.bindings, inserted
    return time.perf_counter() - start


def publish_at(url: str, size: int, measure: int, bundles: list[Any], key_id: str) -> None:
    conn = _fill.connect(url)
    try:
        key, platform_pks = _store_key(url)
        have = _fill.table_rows(conn, "bindings")
        if have < size:
            took = _fill.prefill_both(conn, have, size, platform_pks, key)
            print(f"  prefilled both tables {have:,} -> {size:,} rows in {took:.0f} s", flush=True)
        at = _fill.table_rows(conn, "bindings")
        # Registry, over gRPC: `measure` rows over the 20 platforms (valid group elements).
        grpc_s = 0.0
        if bundles:
            plan = Plan.make(measure, 0, 1, seed=size)
            grpc_s = asyncio.run(_grpc_publish(plan, bundles, key_id))
        # Storage path: `measure` other rows, random tokens, one platform; the floor: the
        # same prepared rows by COPY, batch by batch beside it, so floor_bindings grows as
        # bindings did.
        rng = random.Random(at)  # at: other rows on each run of a --keep store
        batches = _new_bindings(rng, measure, key, b"s")
        storage_s, prepare_s, copy_s, rows = _storage_and_floor(url, conn, batches, platform_pks[0])
        # Multi-row INSERTs are an order slower: a sample of at most 20,000 rows.
        sample = min(measure, 20_000)
        grpc_rows = [
            store.prepare(platform_pks[0], b, 1).rows
            for b in _new_bindings(random.Random(-at), sample, key, b"f")
        ]
        insert_s = _fill.insert_rows(conn, _fill.FLOOR_TABLE, grpc_rows)
        floor = measure / copy_s
        label = f"COPY at {at:,} rows"
        print(f"  at {at:,} rows in each table ({_fill.partition_count(conn)} partitions):")
        row("floor: COPY into bare partitioned table", floor, "rows/s")
        row("floor: multi-row INSERT, same table", sample / insert_s, "rows/s", floor, label)
        rate = measure / storage_s
        goal = publish_goal(rate, floor, at)
        row("storage: bindings.prepare + upsert", rate, "rows/s", floor, label, goal)
        if grpc_s:
            rate = measure / grpc_s
            goal = publish_goal(rate, floor, at)
            row("registry: PublishBindings, gRPC", rate, "rows/s", floor, label, goal)
        again = batches[: max(1, len(batches) // 5)]
        again_s = _republish(url, again, platform_pks[0])
        again_n = sum(map(len, again))
        row(
            f"storage: the same {again_n:,} again (unchanged)",
            again_n / again_s,
            "rows/s",
            floor,
            label,
        )
        lookup_s = _lookup_seconds(url, rows, platform_pks[0])
        print(
            f"    storage path {storage_s:.1f} s = prepare (Python) {prepare_s:.1f} s + upsert"
            f" and commit {storage_s - prepare_s:.1f} s; floor COPY {copy_s:.1f} s; the"
            f" existing-row lookup alone (re-run, rows present) {lookup_s:.1f} s"
        )
    finally:
        conn.close()


def storage_only(url: str, sizes: list[int], measure: int) -> int:
    """The publish part without registry processes: schema, 20 platforms, then per size."""
    from numbind.registry.storage import migrate, principals

    db = Database(url)
    try:
        migrate.upgrade(db.write_engine)

        def register(session: Any) -> None:
            for i in range(PLATFORMS):
                if principals.find(session, "platform", f"scale-p{i:02d}") is None:
                    principals.register(session, "platform", f"scale-p{i:02d}")

        db.transact(register)
    finally:
        db.close()
    conn = _fill.connect(url)
    if not _fill.table_exists(conn, _fill.FLOOR_TABLE):
        _fill.create_floor_table(conn)
    conn.close()
    for size in sizes:
        print(f"\n  publish at {size:,} bindings, {measure:,} rows each way", flush=True)
        publish_at(url, size, measure, [], "")
    return 0


def reissue_both(full: bool, url: str) -> int:
    size = [] if full else ["--quick"]
    code = 0
    for extra in (["--database-url", url], ["--synchronous", "FULL"]):
        print(f"\n  -- bench/reissue.py {' '.join([*size, *extra])}", flush=True)
        code |= subprocess.call([sys.executable, "-m", "bench.reissue", *size, *extra])
    return code


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {statistics.median(ms):,.1f} ms  p99 {percentile(ms, 0.99):,.1f} ms  "
        f"max {max(ms):,.1f} ms  ({len(ms)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--full", action="store_true", help="sizes 1M,10M; reissue at full size")
    parser.add_argument("--sizes", default="50000,200000", help="binding counts, ascending")
    parser.add_argument("--measure", type=int, default=20_000, help="rows published per size")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--quota-seconds", type=float, default=10.0)
    parser.add_argument(
        "--storage-only",
        action="store_true",
        help="publish part only, storage path and floors, no registry processes",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="with --storage-only: keep the tables of an earlier run (a 10M fill) and add to them",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (all by default)",
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"--parts: got {args.parts}, want a subset of {','.join(PARTS)}")
    if args.full:
        args.sizes, args.measure, args.events = "1000000,10000000", 200_000, 200
    sizes = [int(s) for s in args.sizes.split(",")]
    url = args.database_url or os.environ.get("NUMBIND_BENCH_DATABASE_URL") or DEFAULT_URL
    why = reachable(url)
    if why is not None:
        print(f"scale: skipped, PostgreSQL unreachable at {url}: {why}")
        return 0
    print(f"scale: PostgreSQL {url.rsplit('@', 1)[-1]}, {os.cpu_count()} CPUs, sizes {sizes}")
    if not (args.keep and args.storage_only):
        reset_schema(url)
    if args.storage_only:
        return storage_only(url, sizes, args.measure)
    with _live.data_dir(url) as data:
        with _live.servers(url, data, 2, BENCH_ENV) as (a, b):
            carrier, *platforms = add_all(
                a,
                [("carrier", "scale-carrier")]
                + [("platform", f"scale-p{i:02d}") for i in range(PLATFORMS)],
            )
            key_id = asyncio.run(active_key_id(carrier))
            conn = _fill.connect(url)
            _fill.create_floor_table(conn)
            conn.close()
            for size in sizes if "publish" in parts else []:
                print(f"\n  publish at {size:,} bindings, {args.measure:,} rows each way")
                publish_at(url, size, args.measure, platforms, key_id)
            if "queries" in parts:
                rows = _fill.table_rows_url(url)
                q = asyncio.run(_live.holder_queries(carrier, platforms, key_id, 300, args.queries))
                print(f"\n  holder QueryBindings at {rows:,} bindings, 10 each: {_ms(q)}")
            if "latency" in parts:
                lat = asyncio.run(
                    _live.event_latency(
                        carrier, platforms[0], a.listen, b.listen, key_id, args.events
                    )
                )
                print(
                    f"  event latency, report to A -> stream from B (heartbeat "
                    f"{_live.HEARTBEAT} s): {_ms(lat)}"
                )
        if "quota" in parts:
            quota_part(url, data, args.quota_seconds)
    if "reissue" not in parts:
        return 0
    reset_schema(url)
    return reissue_both(args.full, url)


def quota_part(url: str, data: Any, seconds: float) -> None:
    """Three processes with a tight token quota, one principal asking all three."""
    quota = {"NUMBIND_QUOTA_RATE": str(QUOTA_RATE), "NUMBIND_QUOTA_BURST": str(QUOTA_BURST)}
    with _live.servers(url, data, 3, quota) as trio:
        (bundle,) = add_all(trio[0], [("platform", "scale-quota")])
        granted = asyncio.run(_live.quota_granted(bundle, [s.listen for s in trio], seconds))
        configured = QUOTA_BURST + QUOTA_RATE * seconds
        row(f"quota: granted in {seconds:g} s, 3 processes", granted, "elements")
        print(
            f"  configured {configured:,.0f} (burst {QUOTA_BURST} + {QUOTA_RATE}/s): ratio "
            f"{granted / configured:.2f} (1.00 = exact; 3.00 = a bucket per process)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
