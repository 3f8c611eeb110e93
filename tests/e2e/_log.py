"""Helpers for the verifiable-log tests: a seeded story, a witness with its own store, and a
malicious publisher that tampers with the registry's log tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from numbind.protocol import note
from numbind.protocol.bundle import Bundle
from numbind.protocol.merkle import CompactRange, leaf_hash
from numbind.registry.federation.witness import Witness
from numbind.registry.log_key import load_or_create_witness
from numbind.registry.storage import migrate
from numbind.registry.storage.db import Database
from numbind.registry.storage.models import (
    LogCheckpointRow,
    LogLeafRow,
    LogNodeRow,
    LogStateRow,
)
from numbind.registry.testing import RunningRegistry
from numbind.sdk import CarrierClient, Lifecycle, LifecycleReport, ReportSummary
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tests.e2e._story import days_ago, publish, tokenize

PHONE = "+8613800138000"


async def seed(
    reg: RunningRegistry, platforms: tuple[str, ...] = ("drive", "food", "loan")
) -> tuple[Bundle, list[Bundle], ReportSummary]:
    """A number bound at each platform by its old holder, then reissued: one revocation
    with one order per platform. Returns (carrier bundle, platform bundles, summary)."""
    cm = reg.add_carrier("cm", "示例移动")
    bundles = [reg.add_platform(p) for p in platforms]
    token = await tokenize(bundles[0], PHONE)
    for i, b in enumerate(bundles):
        await publish(b, token, [(f"old-holder-{i}".encode(), days_ago(400))])
    async with CarrierClient(cm) as c:
        summary = await c.report(
            [
                LifecycleReport(PHONE, Lifecycle.ISSUED, days_ago(500)),
                LifecycleReport(PHONE, Lifecycle.REISSUED, days_ago(10)),
            ]
        )
    return cm, bundles, summary


async def report_more(cm: Bundle, n: int, start: int = 0) -> None:
    """n more lifecycle events (new numbers, no bindings): the log grows by n leaves."""
    async with CarrierClient(cm) as c:
        await c.report(
            [
                LifecycleReport(f"+86139{start + i:08d}", Lifecycle.ISSUED, days_ago(30))
                for i in range(n)
            ]
        )


def witness_for(reg: RunningRegistry, where: Path) -> Witness:
    """A witness with its own store and key (as a member would be), pinned to the log key."""
    db = Database(f"sqlite:///{where / 'registry.db'}")  # as a member's own store
    migrate.upgrade(db.write_engine)
    signer = load_or_create_witness(where)
    # What a member pins (from the manifest, once it names log keys).
    return Witness(db, signer, note.Ed25519Verifier.parse(reg.registry.log.log_key))


# -- a malicious publisher: rewrites the registry's log tables behind its back ------------
def tamper(
    reg: RunningRegistry, change: Callable[[list[bytes]], list[bytes]], keep_size: int
) -> None:
    """Replace the tree by `change(leaves)` and drop every checkpoint above `keep_size`
    (a rollback also forgets its newer checkpoints); subtree hashes and the head are
    recomputed, so the registry serves the new tree as if it had always been."""

    def act(s: Session) -> None:
        rows = list(s.execute(select(LogLeafRow).order_by(LogLeafRow.idx)).scalars())
        template = rows[0]
        leaves = change([r.commitment for r in rows])
        s.execute(delete(LogLeafRow))
        s.execute(delete(LogNodeRow))
        s.execute(delete(LogCheckpointRow).where(LogCheckpointRow.size > keep_size))
        s.flush()
        edge = CompactRange()
        for i, c in enumerate(leaves):
            src = rows[i] if i < len(rows) else template
            s.add(
                LogLeafRow(
                    idx=i,
                    commitment=c,
                    kind=src.kind,
                    ref=src.ref,
                    holder_pk=src.holder_pk,
                    salt=src.salt,
                    body=src.body,
                    created_us=src.created_us,
                )
            )
            for node, h in edge.append(leaf_hash(c))[1:]:
                s.add(LogNodeRow(level=node.level, idx=node.index, hash=h))
        s.execute(
            update(LogStateRow)
            .where(LogStateRow.id == 1)
            .values(size=edge.size, edge=b"".join(edge.hashes))
        )

    reg.registry.db.transact(act)


def drop_checkpoints_at_or_above(reg: RunningRegistry, size: int) -> None:
    reg.registry.db.transact(
        lambda s: s.execute(delete(LogCheckpointRow).where(LogCheckpointRow.size >= size))
    )
