"""The verifiable log's tables: leaves with their openings, subtree hashes, checkpoints.

`append` runs inside the transaction of the change it records. It locks the one
`log_state` row (appenders queue there, so indices are gap-free and in commit order; every
writer takes this lock last, after its other rows, so no lock cycle can form), extends the
stored right edge leaf by leaf (`merkle.CompactRange`: O(1) amortised hashes per leaf), and
writes the leaves and the hashes of the subtrees of 16 leaves or more that the batch closed
(COPY on PostgreSQL, executemany on SQLite). A proof later reads O(log n) of those hashes
and the leaves of the 16-leaf blocks it touches (`StoredTree`), never a whole range.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from numbind.protocol.log_entries import SALT_BYTES
from numbind.protocol.log_errors import TreeRangeError
from numbind.protocol.merkle import HASH_BYTES, CompactRange, Node, leaf_hash, root_of
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.domain.types import now_us
from numbind.registry.storage import pgcopy
from numbind.registry.storage.db import driver_sql, marks
from numbind.registry.storage.models import (
    LogCheckpointRow,
    LogLeafRow,
    LogStateRow,
    LogWitnessKeyRow,
    OrderRow,
    PrincipalRow,
    WitnessAlarmRow,
    WitnessStateRow,
)
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class StoredOpening:
    index: int
    commitment: bytes
    kind: str
    ref: str
    holder_pk: int | None
    salt: bytes
    body: bytes


# Keys per IN list: well under SQLite's bound on bound variables.
_CHUNK = 400
# Subtree hashes are stored from this level up: subtrees of 16 leaves and more, about one
# node per 8 leaves where every level made it one per leaf (a 100,000-order reissue logs
# 200,000 leaves). A proof computes the hashes below it from the leaves of the 16-leaf
# blocks it touches (`StoredTree`): one more range read of at most 16 leaves per block,
# where a proof needs about one block per side.
STORED_FROM_LEVEL = 4
_BLOCK = 1 << STORED_FROM_LEVEL
_LEAF_COLUMNS = ("idx", "commitment", "kind", "ref", "holder_pk", "salt", "body", "created_us")


def _split(edge: bytes) -> list[bytes]:
    return [edge[i : i + HASH_BYTES] for i in range(0, len(edge), HASH_BYTES)]


def head(session: Session, *, lock: bool = False) -> CompactRange:
    """The tree as committed: its size and right edge (root = `.root()`). Driver SQL: every
    append, checkpoint and proof reads it (hundreds of times a second in a reissue)."""
    conn = session.connection()
    # SQLite has no FOR UPDATE: its one writer already serialises appends.
    lock_sql = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    size, edge = conn.exec_driver_sql(
        f"SELECT size, edge FROM log_state WHERE id = 1{lock_sql}"
    ).one()
    return CompactRange(int(size), _split(bytes(edge)))


def append(session: Session, leaves: Sequence[LogLeaf]) -> int:
    """Append `leaves` in order; return the index of the first (the size before)."""
    if not leaves:
        return head(session).size
    edge = head(session, lock=True)
    first = edge.size
    salts = os.urandom(SALT_BYTES * len(leaves))
    now = now_us()
    leaf_rows: list[tuple[object, ...]] = []
    node_rows: list[tuple[int, int, bytes]] = []
    # CompactRange.append inlined: the hot loop of a 100,000-order reissue. The storage
    # tests hold the result to merkle.MemoryTree's root and proofs.
    sha, hashes, size = hashlib.sha256, list(edge.hashes), first
    for i, leaf in enumerate(leaves):
        salt = salts[i * SALT_BYTES : (i + 1) * SALT_BYTES]
        c = sha(salt + leaf.body).digest()  # log_entries.commitment
        leaf_rows.append((size, c, leaf.kind, leaf.ref, leaf.holder_pk, salt, leaf.body, now))
        h, rest, level = sha(b"\x00" + c).digest(), size, 0  # merkle.leaf_hash
        while rest & 1:
            h = sha(b"\x01" + hashes.pop() + h).digest()  # merkle.node_hash
            rest, level = rest >> 1, level + 1
            if level >= STORED_FROM_LEVEL:
                node_rows.append((level, size >> level, h))
        hashes.append(h)
        size += 1
    edge = CompactRange(size, hashes)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # COPY: one statement per table, where executemany was one per row (a 100,000-order
        # reissue writes ~110,000 of each; storage.pgcopy.copy_rows has the figures).
        pgcopy.copy_rows(conn, "log_leaves", _LEAF_COLUMNS, leaf_rows)
        pgcopy.copy_rows(conn, "log_nodes", ("level", "idx", "hash"), node_rows)
    else:
        conn.exec_driver_sql(
            driver_sql(
                conn,
                f"INSERT INTO log_leaves ({', '.join(_LEAF_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            leaf_rows,
        )
        if node_rows:
            conn.exec_driver_sql(
                driver_sql(conn, "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)"),
                node_rows,
            )
    session.execute(
        update(LogStateRow)
        .where(LogStateRow.id == 1)
        .values(size=edge.size, edge=b"".join(edge.hashes))
    )
    return first


class StoredTree:
    """`merkle.SubtreeHashes` over the stored tree, within one transaction; one query per
    table per proof.

    Driver SQL, not SQLAlchemy expressions: a proof asks for ~2 log2(n) nodes, and building
    and compiling an expression of that shape on every proof cost more than the reads."""

    def __init__(self, session: Session, size: int) -> None:
        self._session = session
        self._size = size

    def subtree_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        for node in nodes:
            if node.level < 0 or node.index < 0 or node.end > self._size:
                raise TreeRangeError(
                    f"subtree [{node.start}, {node.end}): beyond tree size {self._size}"
                )
        conn = self._session.connection()
        found = self._from_leaves({n for n in nodes if n.level < STORED_FROM_LEVEL})
        by_level: dict[int, list[int]] = {}
        for n in sorted({n for n in nodes if n.level >= STORED_FROM_LEVEL}):
            by_level.setdefault(n.level, []).append(n.index)
        # One (level = ? AND idx IN ...) term per level: an index range the planner uses on
        # SQLite and PostgreSQL alike (a row-value IN scans the table on SQLite).
        terms = [
            (level, idxs[i : i + _CHUNK])
            for level, idxs in by_level.items()
            for i in range(0, len(idxs), _CHUNK)
        ]
        for i in range(0, len(terms), 32):
            batch = terms[i : i + 32]
            where = " OR ".join(f"(level = ? AND idx IN ({marks(len(ix))}))" for _, ix in batch)
            params = tuple(v for level, ix in batch for v in (level, *ix))
            sql = f"SELECT level, idx, hash FROM log_nodes WHERE {where}"
            for level, idx, h in conn.exec_driver_sql(driver_sql(conn, sql), params):
                found[Node(int(level), int(idx))] = bytes(h)
        missing = [n for n in nodes if n not in found]
        if missing:
            raise TreeRangeError(f"subtree hashes missing from the store: {missing[:3]}")
        return [found[n] for n in nodes]

    def _from_leaves(self, low: set[Node]) -> dict[Node, bytes]:
        """The hashes of subtrees below STORED_FROM_LEVEL, from the leaves of their blocks
        (each lies inside one aligned block of _BLOCK leaves). A node whose leaves are not
        all stored is left out: the caller reports it missing."""
        if not low:
            return {}
        conn = self._session.connection()
        blocks = sorted({n.start // _BLOCK for n in low})
        hashes: dict[int, bytes] = {}
        for i in range(0, len(blocks), 32):
            batch = blocks[i : i + 32]
            where = " OR ".join("(idx >= ? AND idx < ?)" for _ in batch)
            params = tuple(
                v for b in batch for v in (b * _BLOCK, min((b + 1) * _BLOCK, self._size))
            )
            sql = f"SELECT idx, commitment FROM log_leaves WHERE {where}"
            for idx, c in conn.exec_driver_sql(driver_sql(conn, sql), params):
                hashes[int(idx)] = leaf_hash(bytes(c))
        out: dict[Node, bytes] = {}
        for n in low:
            leaves = [hashes.get(i) for i in range(n.start, n.end)]
            if all(h is not None for h in leaves):
                out[n] = root_of([h for h in leaves if h is not None])
        return out


def commitments(session: Session, start: int, end: int) -> list[bytes]:
    """The leaf data of [start, end), in order.

    Driver SQL: witnesses and monitors read the log's new leaves while a reissue grows it,
    and the ORM's per-row result processing cost more than the read."""
    conn = session.connection()
    sql = "SELECT commitment FROM log_leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
    # fetchall in one call: iterating the result fetched and wrapped its rows one by one
    # (10,000 per GetLeaves call, one call per witness round per 10,000 new leaves).
    rows = conn.exec_driver_sql(driver_sql(conn, sql), (start, end)).fetchall()
    return [bytes(c) for (c,) in rows]


def openings(session: Session, indices: Sequence[int]) -> list[StoredOpening]:
    out: list[StoredOpening] = []
    wanted = sorted(set(indices))
    for i in range(0, len(wanted), _CHUNK):
        for r in session.execute(
            select(
                LogLeafRow.idx,
                LogLeafRow.commitment,
                LogLeafRow.kind,
                LogLeafRow.ref,
                LogLeafRow.holder_pk,
                LogLeafRow.salt,
                LogLeafRow.body,
            ).where(LogLeafRow.idx.in_(wanted[i : i + _CHUNK]))
        ):
            out.append(StoredOpening(*r))
    return sorted(out, key=lambda o: o.index)


def find(session: Session, kind: str, refs: Sequence[str]) -> dict[str, int]:
    """ref -> the index of its leaf of this kind."""
    out: dict[str, int] = {}
    for i in range(0, len(refs), _CHUNK):
        for ref, idx in session.execute(
            select(LogLeafRow.ref, LogLeafRow.idx).where(
                LogLeafRow.kind == kind, LogLeafRow.ref.in_(refs[i : i + _CHUNK])
            )
        ):
            out[ref] = idx
    return out


def revocation_leaves(session: Session, revocation_id: str) -> list[tuple[int, str, str]]:
    """(index, kind, ref) of a revocation's trigger, its orders and their outcomes."""
    rows = list(
        session.execute(
            select(LogLeafRow.idx, LogLeafRow.kind, LogLeafRow.ref).where(
                LogLeafRow.kind == "revocation", LogLeafRow.ref == revocation_id
            )
        )
    )
    rows += session.execute(
        select(LogLeafRow.idx, LogLeafRow.kind, LogLeafRow.ref)
        .join(OrderRow, OrderRow.id == LogLeafRow.ref)
        .where(OrderRow.revocation_id == revocation_id, LogLeafRow.kind.in_(("order", "ack")))
    ).all()
    return sorted((int(i), k, r) for i, k, r in rows)


def principal_names(session: Session, pks: Sequence[int]) -> dict[int, str]:
    wanted = sorted(set(pks))
    rows = session.execute(
        select(PrincipalRow.pk, PrincipalRow.name).where(PrincipalRow.pk.in_(wanted))
    )
    return {int(pk): str(name) for pk, name in rows}


# -- checkpoints ------------------------------------------------------------------------
def latest_checkpoint(session: Session) -> tuple[int, bytes] | None:
    row = session.execute(
        select(LogCheckpointRow.size, LogCheckpointRow.note)
        .order_by(LogCheckpointRow.size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.size), row.note)


def newest_checkpoint(session: Session) -> tuple[int, int] | None:
    """(size, created_us) of the newest checkpoint: when it was first signed and stored
    (cosignatures added later do not change it)."""
    row = session.execute(
        select(LogCheckpointRow.size, LogCheckpointRow.created_us)
        .order_by(LogCheckpointRow.size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.size), int(row.created_us))


def latest_cosigned(
    session: Session, cosignatures: int, scan: int = 1000
) -> tuple[int, bytes] | None:
    """The newest of the last `scan` checkpoints with at least that many cosignature lines
    (lines beyond the log's own signature)."""
    for size, signed in session.execute(
        select(LogCheckpointRow.size, LogCheckpointRow.note)
        .order_by(LogCheckpointRow.size.desc())
        .limit(scan)
    ):
        if signed.count(_SIGNATURE_LINE) - 1 >= cosignatures:
            return int(size), signed
    return None


_SIGNATURE_LINE = "\n\u2014 ".encode()


def checkpoint_at(session: Session, size: int) -> bytes | None:
    return session.scalar(select(LogCheckpointRow.note).where(LogCheckpointRow.size == size))


def put_checkpoint(session: Session, size: int, note: bytes) -> bytes:
    """Keep the first checkpoint signed at a size (another process may have signed one
    with its own timestamp-free text: the same bytes, as the tree is the same)."""
    existing = checkpoint_at(session, size)
    if existing is not None:
        return existing
    session.add(LogCheckpointRow(size=size, note=note, created_us=now_us()))
    session.flush()
    return note


def replace_checkpoint(session: Session, size: int, note: bytes) -> None:
    session.execute(update(LogCheckpointRow).where(LogCheckpointRow.size == size).values(note=note))


# Newest checkpoints kept whole: several minutes at one a second, so a witness (every few
# seconds) always finds the one it fetched when it comes back to cosign it. Well inside
# latest_cosigned's scan, which must also reach the older ones `prune_checkpoints` keeps.
KEEP_CHECKPOINTS = 256


def prune_checkpoints(session: Session, keep: int = KEEP_CHECKPOINTS) -> int:
    """Delete checkpoints no one needs; return how many.

    Kept: the newest `keep`, and beyond them each checkpoint that carries more cosignatures
    than every newer one (at most one per cosignature count), so `latest_cosigned(k)` gives
    the same answer after pruning as before, for every k. Nothing else reads old
    checkpoints: a consistency proof from any old size is computed from the stored subtree
    hashes (`StoredTree`), never from a checkpoint, and an auditor or witness keeps the
    checkpoint it verified itself (its state file, `witness_state`).
    """
    best = -1
    doomed: list[int] = []
    rows = session.execute(
        select(LogCheckpointRow.size, LogCheckpointRow.note).order_by(LogCheckpointRow.size.desc())
    )
    for n, (size, signed) in enumerate(rows):
        cosigned = signed.count(_SIGNATURE_LINE) - 1
        if n < keep or cosigned > best:
            best = max(best, cosigned)
        else:
            doomed.append(int(size))
    for i in range(0, len(doomed), _CHUNK):
        session.execute(
            delete(LogCheckpointRow).where(LogCheckpointRow.size.in_(doomed[i : i + _CHUNK]))
        )
    return len(doomed)


# -- this registry as a witness ---------------------------------------------------------
def witness_state(session: Session, origin: str) -> WitnessStateRow | None:
    return session.get(WitnessStateRow, origin)


def save_witness_state(
    session: Session, origin: str, log_key: str, edge: CompactRange, note: bytes
) -> None:
    row = session.get(WitnessStateRow, origin, with_for_update=True)
    if row is None:
        row = WitnessStateRow(origin=origin)
        session.add(row)
    row.log_key = log_key
    row.size = edge.size
    row.edge = b"".join(edge.hashes)
    row.note = note
    row.updated_us = now_us()


def witness_edge(row: WitnessStateRow) -> CompactRange:
    return CompactRange(int(row.size), _split(row.edge))


def add_alarm(
    session: Session,
    origin: str,
    failure: str,
    message: str,
    old_note: bytes,
    new_note: bytes,
    proof: bytes,
) -> None:
    session.add(
        WitnessAlarmRow(
            origin=origin,
            failure=failure,
            message=message[:1000],
            old_note=old_note,
            new_note=new_note,
            proof=proof,
            created_us=now_us(),
        )
    )


def pinned_witness(session: Session, name: str) -> str | None:
    return session.scalar(select(LogWitnessKeyRow.vkey).where(LogWitnessKeyRow.name == name))


def pin_witness(session: Session, name: str, vkey: str, member: str) -> str:
    """The key pinned for `name`: the existing one, or `vkey`, pinned now."""
    existing = pinned_witness(session, name)
    if existing is not None:
        return existing
    session.add(LogWitnessKeyRow(name=name, vkey=vkey, member=member, created_us=now_us()))
    session.flush()
    return vkey


def alarms(session: Session, limit: int = 20) -> list[WitnessAlarmRow]:
    return list(
        session.scalars(select(WitnessAlarmRow).order_by(WitnessAlarmRow.id.desc()).limit(limit))
    )
