"""The verifiable log: appends during a reissue, proofs at scale, beside SHA-256's floor.

1. Leaves appended per second for a 100,000-order reissue (--orders): the leaves the
   lifecycle authority appends in the reissue's transaction (one per REISSUED event, the
   trigger, one per order: canonical bytes, 16-byte salt, SHA-256 commitment, RFC 9162 leaf
   and node hashes, executemany INSERTs of leaves and closed subtrees, the head row) on a
   fresh SQLite store, timed to commit. Floor: raw SHA-256 compressions per second on one
   core (hashlib over a 64 MiB buffer), divided by the compressions those exact leaves need
   (commitment blocks + 1 leaf-hash block + 2 blocks per interior node): the rate if
   hashing were all the log did.
2. Inclusion-proof verification at 10^7 leaves (--big): the proof path of a leaf in a tree
   of 10^7 leaves comes from `merkle.inclusion_proof` over synthetic subtree hashes (the
   tree is never materialised; verification cost depends only on the path: ceil(log2 n) =
   24 node hashes + 1 leaf hash), the root is folded from that path, and
   `merkle.verify_inclusion` is timed. Floor: the 49 compressions it needs, at the rate
   measured in 1.
3. Proof generation from the stored tree of step 1 (O(log n) reads of stored hashes).

    .venv/bin/python -m bench.log [--orders N] [--big N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from numbind.protocol import merkle
from numbind.protocol.log_entries import SALT_BYTES
from numbind.registry.domain import logged
from numbind.registry.domain.types import EventCause, EventKind, LifecycleKind
from numbind.registry.storage import log, migrate
from numbind.registry.storage.db import Database, Session

from bench._harness import row


def compressions_per_second(seconds: float = 1.5) -> float:
    """SHA-256 compression function calls per second on one core (64-byte blocks)."""
    buf = os.urandom(64 << 20)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        hashlib.sha256(buf).digest()
        best = max(best, (len(buf) / 64) / (time.perf_counter() - t))
    return best


def _blocks(n_bytes: int) -> int:
    return (n_bytes + 9 + 63) // 64  # SHA-256 padding: 0x80, 8-byte length


def reissue_leaves(orders: int, per_number: int = 10) -> list[logged.LogLeaf]:
    numbers = orders // per_number
    tokens = [os.urandom(32) for _ in range(numbers)]
    rid = str(uuid.uuid4())
    now = time.time_ns() // 1000
    events = [
        logged.lifecycle(
            carrier_pk=1,
            carrier="cm",
            token=t,
            key_id="0123456789abcdef",
            kind=int(LifecycleKind.REISSUED),
            effective_us=now,
            applied=True,
            tenure_start_us=now,
            revocation_id=rid,
        )
        for t in tokens
    ]
    made = [
        logged.LoggedOrder(
            str(uuid.uuid4()),
            2 + i % 20,
            f"platform-{i % 20}",
            EventKind.REVOKE,
            EventCause.REISSUED,
            tokens[i // per_number],
            "0123456789abcdef",
            now,
        )
        for i in range(orders)
    ]
    trigger = logged.revocation(
        revocation_id=rid,
        cause=EventCause.REISSUED,
        carrier_pk=1,
        carrier="cm",
        orders=[o.id for o in made],
    )
    return [*events, trigger, *(logged.order(o, rid) for o in made)]


def raw_insert_seconds(path: Path, leaves: Sequence[logged.LogLeaf]) -> float:
    """The store's floor: plain sqlite3 executemany of the same leaf rows and as many
    node rows (n - 1) into the same tables, one transaction, no hashing."""
    now = time.time_ns() // 1000
    leaf_rows = [
        (i, os.urandom(32), x.kind, x.ref, x.holder_pk, os.urandom(SALT_BYTES), x.body, now)
        for i, x in enumerate(leaves)
    ]
    node_rows = []
    level, count = 1, len(leaves) // 2
    while count:
        node_rows += [(level, i, os.urandom(32)) for i in range(count)]
        level, count = level + 1, count // 2
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO log_leaves (idx, commitment, kind, ref, holder_pk, salt, body,"
            " created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            leaf_rows,
        )
        conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", node_rows)
        conn.execute("COMMIT")
        return time.perf_counter() - t
    finally:
        conn.close()


def hash_compressions(leaves: Sequence[logged.LogLeaf]) -> int:
    commit = sum(_blocks(SALT_BYTES + len(leaf.body)) for leaf in leaves)
    return commit + len(leaves) + 2 * (len(leaves) - 1)


class Synthetic:
    """Subtree hashes of a tree that is never built: each a hash of its coordinates."""

    def subtree_hashes(self, nodes: Sequence[merkle.Node]) -> list[bytes]:
        return [hashlib.sha256(b"%d/%d" % (n.level, n.index)).digest() for n in nodes]


def fold_root(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root this path leads to (RFC 9162 2.1.3.2, without the comparison)."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = merkle.node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = merkle.node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=10_000_000)
    args = ap.parse_args(argv)

    cps = compressions_per_second()
    row("floor: SHA-256 compressions/s, one core", cps, "/s")

    leaves = reissue_leaves(args.orders)
    per_leaf = hash_compressions(leaves) / len(leaves)
    floor = cps / per_leaf
    with tempfile.TemporaryDirectory(prefix="numbind-bench-log-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'store.db'}")
        try:
            migrate.upgrade(db.write_engine)
            t = time.perf_counter()
            db.transact(lambda s: log.append(s, leaves))
            took = time.perf_counter() - t
            label = f"SHA-256 only, {per_leaf:.1f} compressions/leaf"
            fresh = Database(f"sqlite:///{Path(tmp) / 'raw.db'}")
            migrate.upgrade(fresh.write_engine)
            fresh.close()
            raw = raw_insert_seconds(Path(tmp) / "raw.db", leaves)
            print(
                f"  reissue of {args.orders:,} orders: {len(leaves):,} leaves appended and "
                f"committed in {took * 1000:,.0f} ms (SQLite)"
            )
            row(
                "leaves appended/s during the reissue", len(leaves) / took, "leaves/s", floor, label
            )
            row(
                "  the same, beside the store's own floor",
                len(leaves) / took,
                "leaves/s",
                len(leaves) / raw,
                "raw sqlite3 INSERTs of the rows",
            )
            edge = db.transact(log.head, write=False)
            size = edge.size
            samples = []
            proof: list[bytes] = []
            for i in range(200):
                idx = (i * 7919) % size

                def prove(s: Session, idx: int = idx) -> list[bytes]:
                    return merkle.inclusion_proof(idx, size, log.StoredTree(s, size))

                t = time.perf_counter()
                proof = db.transact(prove, write=False)
                samples.append(time.perf_counter() - t)
            empty = []
            for _ in range(200):
                t = time.perf_counter()
                db.transact(lambda s: None, write=False)
                empty.append(time.perf_counter() - t)
            print(
                f"  inclusion proof from the store at {size:,} leaves: p50 "
                f"{statistics.median(samples) * 1e3:.2f} ms ({len(proof)} hashes, one read "
                f"transaction each; an empty read transaction: p50 "
                f"{statistics.median(empty) * 1e3:.2f} ms in this run)"
            )
        finally:
            db.close()

    size = args.big
    index = size // 3 + 12_345
    leaf = merkle.leaf_hash(b"an order's commitment")
    proof = merkle.inclusion_proof(index, size, Synthetic())
    root = fold_root(leaf, index, size, proof)
    runs = []
    for _ in range(2_000):
        t = time.perf_counter()
        merkle.verify_inclusion(leaf, index, size, proof, root)
        runs.append(time.perf_counter() - t)
    verify_us = statistics.median(runs) * 1e6
    need = 1 + 2 * len(proof)
    floor_us = need / cps * 1e6
    print(
        f"  inclusion-proof verification at {size:,} leaves ({len(proof)} hashes): p50 "
        f"{verify_us:.1f} us   floor {floor_us:.1f} us ({need} compressions)   "
        f"ratio {verify_us / floor_us:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
