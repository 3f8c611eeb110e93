"""Reconciliation: make the registry hold exactly a platform's snapshot, moving only the
difference.

Streams the snapshot once into a SnapshotStore, compares per-bucket digests with the
registry, lists only the buckets that differ on both sides, then publishes what is missing
or changed and withdraws what is extra. Bindings under other token keys are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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

__all__ = [
    "WITHDRAW_FLOOR",
    "WITHDRAW_SHARE_PERCENT",
    "SyncOptions",
    "default_withdraw_limit",
    "refusal_text",
    "run_sync",
]

log = logging.getLogger("numbind.sdk")

# A sync withdraws at most the larger of these unless told otherwise: a truncated export,
# or one pointed at the wrong platform, must not empty the registry's copy.
WITHDRAW_SHARE_PERCENT = 10
WITHDRAW_FLOOR = 1_000
# Positions of skipped revoked rows kept for the summary.
_KEEP_POSITIONS = 1_000


def default_withdraw_limit(server_bindings: int) -> int:
    """The most a sync withdraws unasked: 10 % of the registry's bindings or 1,000, whichever
    is larger."""
    return max(server_bindings * WITHDRAW_SHARE_PERCENT // 100, WITHDRAW_FLOOR)


@dataclass(frozen=True)
class SyncOptions:
    bucket_bits: int | None
    dry_run: bool
    # None: default_withdraw_limit; ignored when force.
    max_withdraw: int | None
    force: bool
    work_dir: Path | None
    progress: ProgressCallback | None
    batch_size: int
    in_flight: int

    def __post_init__(self) -> None:
        if self.max_withdraw is not None and self.max_withdraw < 0:
            raise ValueError(f"max_withdraw: got {self.max_withdraw}, want >= 0")
        if self.force and self.max_withdraw is not None:
            raise ValueError("max_withdraw and force: give one (force means no limit)")

    def limit(self, server_bindings: int) -> int | None:
        if self.force:
            return None
        if self.max_withdraw is not None:
            return self.max_withdraw
        return default_withdraw_limit(server_bindings)


@dataclass
class _Plan:
    added: int = 0
    changed: int = 0
    withdrawn: int = 0
    listed: int = 0
    revoked: int = 0
    revoked_positions: list[int] = field(default_factory=list)


def refusal_text(withdrawn: int, server_total: int, limit: int, set_by: str = "") -> str:
    """Why a sync refuses: what it would withdraw, of how many, and the limit (``set_by``
    names the option that set it; empty for the default rule)."""
    share = f" ({withdrawn / server_total:.1%})" if server_total else ""
    why = set_by or (
        f"{WITHDRAW_SHARE_PERCENT} % of the registry's bindings or {WITHDRAW_FLOOR:,}, "
        "whichever is larger"
    )
    return (
        f"the sync would withdraw {withdrawn:,} of the registry's {server_total:,} "
        f"bindings{share}, more than the limit of {limit:,} ({why})"
    )


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
        remote, revoked = await rpc.digest_and_revoked(bits, key_id)
        server_total = sum(b.count for b in remote.values())
        if options.bucket_bits is None and choose_bucket_bits(server_total) > bits:
            # The registry holds far more than the snapshot: finer buckets keep lists short.
            bits = choose_bucket_bits(server_total)
            remote, revoked = await rpc.digest_and_revoked(bits, key_id)
        local = await store.run(store.buckets, bits)
        todo = differing(local, remote)
        plan = await _plan(rpc, store, key_id, bits, todo, revoked > 0, options)
        if plan.revoked:
            # Skipped rows are not the registry's to hold: compare without them.
            local = await store.run(store.buckets, bits)
            log.warning(
                "sync: skipped %s that the registry revoked after the holder's request or a "
                "reissue, rather than republish %s (remove %s from the export; a bound_at "
                "after the revocation binds anew)",
                f"{plan.revoked:,} snapshot row{'s' if plan.revoked != 1 else ''}",
                "it" if plan.revoked == 1 else "them",
                "that number" if plan.revoked == 1 else "those numbers",
            )

        withdrawn = plan.withdrawn
        limit = options.limit(server_total)
        refusal = ""
        if limit is not None and withdrawn > limit:
            asked = "max_withdraw" if options.max_withdraw is not None else ""
            refusal = refusal_text(withdrawn, server_total, limit, asked)
            if not options.dry_run:
                raise SyncAborted(
                    f"{refusal}; nothing changed. If the snapshot is complete, pass "
                    f"max_withdraw={withdrawn} (or force=True)",
                    withdraw=withdrawn,
                    server_bindings=server_total,
                    limit=limit,
                )

        converged: bool | None = None
        if not options.dry_run:
            await _apply(rpc, store, key_id, plan.added + plan.changed, withdrawn, options)
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
            buckets_listed=plan.listed,
            published=plan.added + plan.changed,
            added=plan.added,
            changed=plan.changed,
            withdrawn=withdrawn,
            dry_run=options.dry_run,
            converged=converged,
            seconds=time.monotonic() - began,
            withdraw_limit=limit,
            refusal=refusal,
            revoked_skipped=plan.revoked,
            revoked_positions=sorted(plan.revoked_positions)[:_KEEP_POSITIONS],
        )
    finally:
        await asyncio.to_thread(store.close)


async def _plan(
    rpc: BindingRpc,
    store: SnapshotStore,
    key_id: str,
    bits: int,
    buckets: list[int],
    any_revoked: bool,
    options: SyncOptions,
) -> _Plan:
    """List each differing bucket and record what to publish and withdraw in the store.

    A snapshot row the registry lacks may be one it revoked (a holder's request or a
    reissue, acked by this platform): republished as it was it would stay revoked, so it is
    skipped, and dropped from the snapshot's digests. Its bound_at after the revocation
    makes it a new binding, published as any other."""
    plan = _Plan()
    meter = Meter("compare", len(buckets), options.progress, unit="bucket").start()

    async def compare(bucket: int) -> None:
        server: dict[Key, tuple[int, int]] = {}
        async for page in rpc.pages(bits, bucket, key_id, MAX_PAGE_SIZE, wire.item_of):
            for token, ref, us, kind in page:
                server[(token, ref)] = (us, kind)
        mine = await store.run(store.bucket, bits, bucket)
        added: list[Planned] = []
        changed: list[Planned] = []
        for key, (us, kind, pos) in mine.items():
            theirs = server.pop(key, None)
            if theirs is None:
                added.append((*key, us, kind, pos))
            elif theirs != (us, kind):
                changed.append((*key, us, kind, pos))
        if any_revoked and added:
            revoked = await rpc.revoked(bits, bucket, key_id)
            stale = [p for p in added if p[2] <= revoked.get((p[0], p[1]), -1)]
            if stale:
                await store.run(store.drop, stale)
                plan.revoked += len(stale)
                if len(plan.revoked_positions) < _KEEP_POSITIONS:
                    plan.revoked_positions.extend(pos for *_, pos in stale)
                skip = {(p[0], p[1]) for p in stale}
                added = [p for p in added if (p[0], p[1]) not in skip]
        plan.added += len(added)
        plan.changed += len(changed)
        plan.withdrawn += len(server)
        plan.listed += 1
        await store.run(store.plan, added + changed, list(server))
        meter.add(1)

    await pipeline(iterate(buckets), compare, options.in_flight)
    return plan


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
            Meter("publish", publishes, options.progress).start(),
        )
    if withdrawals:

        async def as_keys(chunk: list[Key], start: int) -> WithdrawBatch:
            # Withdrawals are the registry's extras, in no input of the caller's: count them.
            return key_id, chunk, ("withdrawal", list(range(start + 1, start + len(chunk) + 1)))

        await rpc.withdraw(
            store.planned_withdrawals(options.batch_size),
            as_keys,
            Meter("withdraw", withdrawals, options.progress).start(),
        )
