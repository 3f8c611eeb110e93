"""Reconciliation: make the registry hold exactly a platform's snapshot, moving only the
difference.

Streams the snapshot once into a SnapshotStore, compares per-bucket digests with the
registry, lists only the buckets that differ on both sides, then publishes what is missing
or changed and withdraws what is extra.

The comparison runs under the key the registry holds bindings under (its active key, the
store key). After a key rotation, snapshot rows tokenised under the old key are tokenised
again (progress phase ``re-tokenise``); while the registry re-keys its store, digests and
lists are waited out (phase ``re-key``, numbind.sdk.rekeying); a rotation in the middle of
the comparison starts it over. Nothing is sent until one comparison has finished, so a
rotation never makes a sync withdraw or re-publish a binding.
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
from numbind.sdk.errors import KeyRotated, SyncAborted
from numbind.sdk.model import BucketDigest, Item, Key, SyncSummary
from numbind.sdk.pipeline import iterate, pipeline
from numbind.sdk.progress import Meter, ProgressCallback
from numbind.sdk.rekeying import wait_out_rekey
from numbind.sdk.snapshot import (
    Planned,
    SnapshotStore,
    check_bits,
    choose_bucket_bits,
    differing,
)
from numbind.sdk.tokenizer import Tokenizer

__all__ = ["SyncOptions", "run_sync"]

# A sync starts its comparison over at most this often when the registry's key rotates
# under it (rotations are rare; a loop beyond this is a misconfiguration, e.g. a pinned key).
_ROTATIONS_PER_SYNC = 3


@dataclass(frozen=True)
class SyncOptions:
    bucket_bits: int | None
    dry_run: bool
    max_withdraw: int | None
    work_dir: Path | None
    progress: ProgressCallback | None
    batch_size: int
    in_flight: int


@dataclass(frozen=True)
class _Plan:
    key_id: str
    bits: int
    server_total: int
    local: dict[int, tuple[int, bytes]]
    differing: list[int]
    counts: tuple[int, int, int, int]  # added, changed, withdrawn, buckets listed


async def run_sync(
    rpc: BindingRpc,
    tokenizer: Tokenizer,
    fill: Callable[[SnapshotStore], Awaitable[int]],
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
        # A rotation makes the registry hold every binding under its new key. Before
        # comparing (and again if it happens while comparing) the snapshot is moved to
        # that key; a re-key under way is waited out. Nothing is changed on the registry
        # until a comparison has finished under the key it holds bindings under.
        for attempt in range(_ROTATIONS_PER_SYNC + 1):
            key_id = await _settle(store, tokenizer, options)
            await store.run(store.reset_plan)
            try:
                plan = await _compare(rpc, store, key_id, distinct, options)
                break
            except KeyRotated:
                if attempt == _ROTATIONS_PER_SYNC:
                    raise
        key_id, bits = plan.key_id, plan.bits
        added, changed, withdrawn, listed = plan.counts

        limit = options.max_withdraw
        if limit is not None and withdrawn > limit and not options.dry_run:
            raise SyncAborted(
                f"sync would withdraw {withdrawn} of {plan.server_total} bindings, more than "
                f"max_withdraw={limit}; nothing changed"
            )

        converged: bool | None = None
        if not options.dry_run:
            await _apply(rpc, store, key_id, added + changed, withdrawn, options)
            try:
                after = await _digest(rpc, bits, key_id, options)
                converged = not differing(plan.local, after)
            except KeyRotated:  # rotated since the comparison: the next sync settles it
                converged = False

        return SyncSummary(
            rows=rows,
            bindings=distinct,
            duplicates=rows - distinct,
            server_bindings=plan.server_total,
            key_id=key_id,
            bucket_bits=bits,
            buckets_total=1 << bits,
            buckets_differing=len(plan.differing),
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


async def _settle(store: SnapshotStore, tokenizer: Tokenizer, options: SyncOptions) -> str:
    """The key the registry holds bindings under (its active key, or the key the client
    pinned), with every snapshot row tokenised under it."""
    key = await tokenizer.refresh()
    if (await store.run(store.keys)) - {key.key_id}:
        meter = Meter("re-tokenise", None, options.progress)
        while rows := await store.run(store.stale, key.key_id, options.batch_size):
            e164s = [r[-1] for r in rows]
            if any(e164 is None for e164 in e164s):
                raise KeyRotated(
                    f"records are under {store.key_id}, but the registry now holds every "
                    f"binding under {key.key_id}: tokenise them under it and sync again",
                    key.key_id,
                )
            numbers = [e164 for e164 in e164s if e164 is not None]
            results = await tokenizer.tokenize_e164(numbers, key=key)
            await store.run(store.replace, rows, [t.token for t in results], key.key_id)
            meter.add(len(rows))
        await store.run(store.refold)
    store.key_id = key.key_id
    return key.key_id


async def _digest(
    rpc: BindingRpc, bits: int, key_id: str, options: SyncOptions
) -> dict[int, BucketDigest]:
    return await wait_out_rekey(lambda: rpc.digest(bits, key_id), options.progress)


async def _compare(
    rpc: BindingRpc, store: SnapshotStore, key_id: str, distinct: int, options: SyncOptions
) -> _Plan:
    """Compare digests, list the buckets that differ, and plan publish / withdraw."""
    bits = options.bucket_bits
    if bits is None:
        bits = choose_bucket_bits(distinct)
    remote = await _digest(rpc, bits, key_id, options)
    server_total = sum(b.count for b in remote.values())
    if options.bucket_bits is None and choose_bucket_bits(server_total) > bits:
        # The registry holds far more than the snapshot: finer buckets keep lists short.
        bits = choose_bucket_bits(server_total)
        remote = await _digest(rpc, bits, key_id, options)
    local = await store.run(store.buckets, bits)
    todo = differing(local, remote)
    counts = await _plan(rpc, store, key_id, bits, todo, options)
    return _Plan(key_id, bits, server_total, local, todo, counts)


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
        pages = rpc.pages(
            bits,
            bucket,
            key_id,
            MAX_PAGE_SIZE,
            wire.item_of,
            wait_rekey=True,
            progress=options.progress,
        )
        async for page in pages:
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
