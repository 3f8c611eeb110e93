"""Reconciliation: make the registry hold exactly a platform's snapshot, moving only the
difference.

Streams the snapshot once into a SnapshotStore, compares per-bucket digests with the
registry, lists only the buckets that differ on both sides, then publishes what is missing
or changed and withdraws what is extra. Bindings under other token keys are left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from numbind.protocol.limits import MAX_PAGE_SIZE
from numbind.sdk import wire
from numbind.sdk.bindings import BindingRpc, PublishBatch, WithdrawBatch
from numbind.sdk.errors import SyncAborted
from numbind.sdk.model import Item, Key, SyncSummary
from numbind.sdk.pipeline import iterate, pipeline
from numbind.sdk.progress import Meter, ProgressCallback
from numbind.sdk.snapshot import (
    Planned,
    SnapshotStore,
    check_bits,
    choose_bucket_bits,
    differing,
)

__all__ = ["SyncOptions", "run_sync"]


@dataclass(frozen=True)
class SyncOptions:
    bucket_bits: int | None
    dry_run: bool
    max_withdraw: int | None
    work_dir: Path | None
    progress: ProgressCallback | None
    batch_size: int
    in_flight: int


async def run_sync(
    rpc: BindingRpc,
    fill: Callable[[SnapshotStore], Awaitable[int]],
    default_key: Callable[[], Awaitable[str]],
    options: SyncOptions,
) -> SyncSummary:
    """Sync the snapshot that ``fill`` writes into the store (it returns the rows read)."""
    began = time.monotonic()
    if options.bucket_bits is not None:
        check_bits(options.bucket_bits)
    store = SnapshotStore(options.work_dir)
    try:
        rows = await fill(store)
        distinct = await store.run(store.finish)
        key_id = store.key_id or await default_key()

        bits = options.bucket_bits
        if bits is None:
            bits = choose_bucket_bits(distinct)
        remote = await rpc.digest(bits, key_id)
        server_total = sum(b.count for b in remote.values())
        if options.bucket_bits is None and choose_bucket_bits(server_total) > bits:
            # The registry holds far more than the snapshot: finer buckets keep lists short.
            bits = choose_bucket_bits(server_total)
            remote = await rpc.digest(bits, key_id)
        local = await store.run(store.buckets, bits)
        todo = differing(local, remote)
        added, changed, withdrawn, listed = await _plan(rpc, store, key_id, bits, todo, options)

        limit = options.max_withdraw
        if limit is not None and withdrawn > limit and not options.dry_run:
            raise SyncAborted(
                f"sync would withdraw {withdrawn} of {server_total} bindings, more than "
                f"max_withdraw={limit}; nothing changed"
            )

        converged: bool | None = None
        if not options.dry_run:
            await _apply(rpc, store, key_id, added + changed, withdrawn, options)
            converged = not differing(local, await rpc.digest(bits, key_id))

        return SyncSummary(
            rows=rows,
            bindings=distinct,
            duplicates=rows - distinct,
            server_bindings=server_total,
            key_id=key_id,
            bucket_bits=bits,
            buckets_total=1 << bits,
            buckets_differing=len(todo),
            buckets_listed=listed,
            published=added + changed,
            added=added,
            changed=changed,
            withdrawn=withdrawn,
            dry_run=options.dry_run,
            converged=converged,
            seconds=time.monotonic() - began,
        )
    finally:
        await asyncio.to_thread(store.close)


async def _plan(
    rpc: BindingRpc,
    store: SnapshotStore,
    key_id: str,
    bits: int,
    buckets: list[int],
    options: SyncOptions,
) -> tuple[int, int, int, int]:
    """List each differing bucket and record what to publish and withdraw in the store:
    (added, changed, withdrawn, buckets listed)."""
    planned = [0, 0, 0, 0]
    meter = Meter("compare", len(buckets), options.progress, unit="bucket")

    async def compare(bucket: int) -> None:
        server: dict[Key, tuple[int, int]] = {}
        async for page in rpc.pages(bits, bucket, key_id, MAX_PAGE_SIZE, wire.item_of):
            for token, ref, us, kind in page:
                server[(token, ref)] = (us, kind)
        mine = await store.run(store.bucket, bits, bucket)
        publish: list[Planned] = []
        for key, (us, kind, pos) in mine.items():
            theirs = server.pop(key, None)
            if theirs != (us, kind):
                publish.append((*key, us, kind, pos))
                planned[1 if theirs is not None else 0] += 1
        withdraw = list(server)
        planned[2] += len(withdraw)
        planned[3] += 1
        await store.run(store.plan, publish, withdraw)
        meter.add(1)

    await pipeline(iterate(buckets), compare, options.in_flight)
    added, changed, withdrawn, listed = planned
    return added, changed, withdrawn, listed


async def _apply(
    rpc: BindingRpc,
    store: SnapshotStore,
    key_id: str,
    publishes: int,
    withdrawals: int,
    options: SyncOptions,
) -> None:
    if publishes:

        async def as_items(chunk: list[Planned], _: int) -> PublishBatch:
            # A refused binding is named by its row in the caller's snapshot.
            items: list[Item] = [(t, r, us, k) for t, r, us, k, _ in chunk]
            return key_id, items, ("binding", [pos for *_, pos in chunk])

        await rpc.publish(
            store.planned_publishes(options.batch_size),
            as_items,
            Meter("publish", publishes, options.progress),
        )
    if withdrawals:

        async def as_keys(chunk: list[Key], start: int) -> WithdrawBatch:
            # Withdrawals are the registry's extras, in no input of the caller's: count them.
            return key_id, chunk, ("withdrawal", list(range(start + 1, start + len(chunk) + 1)))

        await rpc.withdraw(
            store.planned_withdrawals(options.batch_size),
            as_keys,
            Meter("withdraw", withdrawals, options.progress),
        )
