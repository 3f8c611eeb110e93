"""The verifiable log's store on every backend: batched appends keep the tree RFC 9162's,
proofs come from O(log n) stored hashes, indices are gap-free across transactions."""

from __future__ import annotations

from functools import partial

import pytest
from numbind.protocol import merkle
from numbind.protocol.log_entries import Opening, canonical
from numbind.protocol.log_errors import TreeRangeError
from numbind.registry.domain.logged import LogLeaf
from numbind.registry.storage import log, migrate
from numbind.registry.storage.db import Database, Session
from numbind.registry.storage.models import LogLeafRow, LogNodeRow
from sqlalchemy import delete, select


def _leaf(i: int, holder: int | None = None) -> LogLeaf:
    return LogLeaf("order", f"order-{i}", holder, canonical({"t": "order", "id": f"order-{i}"}))


def _stored_nodes(s: Session) -> dict[tuple[int, int], bytes]:
    rows = s.execute(select(LogNodeRow.level, LogNodeRow.idx, LogNodeRow.hash))
    return {(int(level), int(idx)): bytes(h) for level, idx, h in rows}


def test_a_node_whose_leaves_are_not_all_stored_is_missing_not_guessed(db: Database) -> None:
    db.transact(lambda s: log.append(s, [_leaf(i) for i in range(20)]))

    def drop_leaf(s: Session) -> None:
        s.execute(delete(LogLeafRow).where(LogLeafRow.idx == 5))

    db.transact(drop_leaf)
    tree = partial(log.StoredTree, size=20)
    with pytest.raises(TreeRangeError, match="missing"):
        db.transact(lambda s: tree(s).subtree_hashes([merkle.Node(2, 1)]), write=False)
    # The rest of the block still answers.
    got = db.transact(lambda s: tree(s).subtree_hashes([merkle.Node(2, 0)]), write=False)
    assert len(got) == 1


def test_migrating_down_stores_the_small_subtrees_again_and_up_drops_them(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.write_engine)
        db.transact(lambda s: log.append(s, [_leaf(i) for i in range(45)]))
        data = db.transact(lambda s: log.commitments(s, 0, 45), write=False)
        reference = merkle.MemoryTree(merkle.leaf_hash(c) for c in data)
        migrate.downgrade(db.write_engine, "0012_binding_room")
        stored = db.transact(_stored_nodes, write=False)
        # Every complete subtree of two leaves or more, as storage.log stored them before.
        want = {(lv, i) for lv in range(1, 6) for i in range(45 >> lv)}
        assert set(stored) == want
        for (level, idx), h in stored.items():
            assert reference.subtree_hashes([merkle.Node(level, idx)]) == [h]
        migrate.upgrade(db.write_engine)
        assert set(db.transact(_stored_nodes, write=False)) == {
            n for n in want if n[0] >= log.STORED_FROM_LEVEL
        }
    finally:
        db.close()


def test_batched_appends_build_the_rfc9162_tree_and_prove_from_stored_hashes(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.write_engine)
        firsts = [
            db.transact(partial(log.append, leaves=[_leaf(base + i) for i in range(n)]))
            for base, n in ((0, 1), (1, 6), (7, 50), (57, 14))
        ]
        assert firsts == [0, 1, 7, 57]  # gap-free, in commit order
        size = 71
        data = db.transact(lambda s: log.commitments(s, 0, size), write=False)
        reference = merkle.MemoryTree(merkle.leaf_hash(c) for c in data)
        edge = db.transact(log.head, write=False)
        assert edge.size == size and edge.root() == reference.root()

        def proofs(s: Session) -> None:
            tree = log.StoredTree(s, size)
            # Every leaf and every older size: the hashes below STORED_FROM_LEVEL come from
            # the leaves of whole and partial 16-leaf blocks, those above from log_nodes.
            for idx in range(size):
                proof = merkle.inclusion_proof(idx, size, tree)
                assert proof == reference.inclusion_proof(idx)
                merkle.verify_inclusion(merkle.leaf_hash(data[idx]), idx, size, proof, edge.root())
            for old in range(1, size + 1):
                proof = merkle.consistency_proof(old, size, tree)
                assert proof == reference.consistency_proof(old)
                merkle.verify_consistency(old, size, proof, reference.root(old), edge.root())
            # A smaller tree's proofs come from the same stored hashes.
            assert merkle.root_at(40, tree) == reference.root(40)

        db.transact(proofs, write=False)
        # Stored: the subtrees of 16 leaves and more (71 leaves: four of 16, two of 32, one
        # of 64), each with MemoryTree's hash; the smaller ones are not.
        stored = db.transact(_stored_nodes, write=False)
        assert sorted(stored) == [(4, 0), (4, 1), (4, 2), (4, 3), (5, 0), (5, 1), (6, 0)]
        for (level, idx), h in stored.items():
            assert reference.subtree_hashes([merkle.Node(level, idx)]) == [h]
        opened = db.transact(lambda s: log.openings(s, [3, 60]), write=False)
        for o in opened:
            Opening(o.index, o.salt, o.body).check(data[o.index])
            assert Opening(o.index, o.salt, o.body).entry()["id"] == f"order-{o.index}"
        # Salted: the same entry twice commits to two different leaves.
        db.transact(lambda s: log.append(s, [_leaf(0), _leaf(0)]))
        twins = db.transact(lambda s: log.commitments(s, 71, 73), write=False)
        assert twins[0] != twins[1]
    finally:
        db.close()


def test_checkpoints_keep_the_first_signed_at_a_size(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.write_engine)
        assert db.transact(log.latest_checkpoint, write=False) is None
        assert db.transact(lambda s: log.put_checkpoint(s, 3, b"first")) == b"first"
        assert db.transact(lambda s: log.put_checkpoint(s, 3, b"second")) == b"first"
        db.transact(lambda s: log.put_checkpoint(s, 5, b"five"))
        assert db.transact(log.latest_checkpoint, write=False) == (5, b"five")
    finally:
        db.close()


def _cosigned(k: int) -> bytes:
    """A stored note with the log's signature line and `k` cosignature lines."""
    return b"origin\n1\nroot\n\n" + b"".join("\u2014 w ab\n".encode() for _ in range(k + 1))


def test_pruning_keeps_the_newest_and_every_answer_latest_cosigned_gives(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.write_engine)
        # Sizes 1..40; size 5 has 2 cosignatures, 12 and 20 have 1, 30 has 1, the rest none.
        cosigs = {5: 2, 12: 1, 20: 1, 30: 1}
        for size in range(1, 41):
            db.transact(partial(log.put_checkpoint, size=size, note=_cosigned(cosigs.get(size, 0))))
        before = [
            db.transact(partial(log.latest_cosigned, cosignatures=k), write=False) for k in (1, 2)
        ]
        assert db.transact(lambda s: log.prune_checkpoints(s, keep=8)) == 40 - 8 - 2
        kept = [
            size
            for size in range(1, 41)
            if db.transact(partial(log.checkpoint_at, size=size), write=False)
        ]
        # The newest 8, the newest with one cosignature (30), the newest with two (5).
        assert kept == [5, 30, *range(33, 41)]
        after = [
            db.transact(partial(log.latest_cosigned, cosignatures=k), write=False) for k in (1, 2)
        ]
        assert after == before == [(30, _cosigned(1)), (5, _cosigned(2))]
        assert db.transact(log.latest_checkpoint, write=False) == (40, _cosigned(0))
        assert db.transact(lambda s: log.prune_checkpoints(s, keep=8)) == 0  # idempotent
    finally:
        db.close()
