"""numbind.protocol.merkle over stored nodes: proofs from stored subtree hashes, a source
that breaks its contract, and compact ranges resuming from their state and growing by leaf data."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from numbind.protocol import merkle as m
from numbind.protocol.log_errors import (
    TreeRangeError,
)

from tests.unit._merkle import reference_mth


class _StoredNodes:
    """A SubtreeHashes as the registry will have it: node hashes kept as they were closed by
    appends, keyed by (level, index), with every request recorded."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0
        self.requests: list[list[m.Node]] = []

    def store(self, closed: list[tuple[m.Node, bytes]]) -> None:
        for node, h in closed:
            self.nodes[(node.level, node.index)] = h
            self.size = max(self.size, node.end)

    def subtree_hashes(self, nodes: Sequence[m.Node]) -> list[bytes]:
        self.requests.append(list(nodes))
        for node in nodes:
            if node.end > self.size:
                raise TreeRangeError(f"node {node} beyond {self.size}")
        return [self.nodes[(n.level, n.index)] for n in nodes]


def test_proofs_from_stored_subtree_hashes_take_one_batch() -> None:
    leaves = [m.leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
    edge, stored = m.CompactRange(), _StoredNodes()
    stored.store(edge.extend(leaves))
    assert len(stored.nodes) == 2 * len(leaves) - bin(len(leaves)).count("1")
    tree = m.MemoryTree(leaves)
    for index, size in [(0, 1000), (999, 1000), (512, 777), (300, 513), (0, 1)]:
        stored.requests.clear()
        proof = m.inclusion_proof(index, size, stored)
        assert len(stored.requests) == (1 if size > 1 else 0)
        assert all(len(r) <= 2 * size.bit_length() for r in stored.requests)
        assert proof == tree.inclusion_proof(index, size)
        m.verify_inclusion(leaves[index], index, size, proof, tree.root(size))
    for size1, size2 in [(1, 1000), (511, 512), (333, 999), (512, 1000)]:
        stored.requests.clear()
        proof = m.consistency_proof(size1, size2, stored)
        assert len(stored.requests) == 1
        assert proof == tree.consistency_proof(size1, size2)
        m.verify_consistency(size1, size2, proof, tree.root(size1), tree.root(size2))
    assert m.root_at(777, stored) == reference_mth(leaves[:777])


def test_a_source_that_breaks_its_contract_is_not_trusted() -> None:
    class Short:
        def subtree_hashes(self, nodes: Sequence[m.Node]) -> list[bytes]:
            return [b"\x00" * 32] * (len(nodes) - 1)

    with pytest.raises(ValueError, match="broke its contract"):
        m.inclusion_proof(3, 8, Short())


def test_compact_range_resumes_from_its_state_and_from_stored_nodes() -> None:
    leaves = [m.leaf_hash(bytes([i])) for i in range(200)]
    first = m.CompactRange()
    first.extend(leaves[:123])
    assert len(first.hashes) == bin(123).count("1")
    resumed = m.CompactRange(first.size, first.hashes)
    resumed.extend(leaves[123:])
    assert resumed.root() == reference_mth(leaves)

    stored = _StoredNodes()
    stored.store(m.CompactRange().extend(leaves[:123]))
    rebuilt = m.CompactRange.from_source(123, stored)
    assert rebuilt.hashes == first.hashes
    closed = rebuilt.append(leaves[123])
    assert closed[0] == (m.Node(0, 123), leaves[123])
    # 123 = 0b1111011 ends in two ones: leaf 123 closes [122, 124) and [120, 124).
    assert [n for n, _ in closed] == [m.Node(0, 123), m.Node(1, 61), m.Node(2, 30)]
    assert closed[-1][1] == reference_mth(leaves[120:124])


def test_compact_range_refuses_inconsistent_state() -> None:
    with pytest.raises(TreeRangeError, match="got 1 hashes, want 2"):
        m.CompactRange(3, [b"\x00" * 32])
    with pytest.raises(TreeRangeError, match="hash 0: got 31 bytes"):
        m.CompactRange(1, [b"\x00" * 31])
    with pytest.raises(TreeRangeError, match="leaf hash: got 3 bytes"):
        m.CompactRange().append(b"abc")
    with pytest.raises(TreeRangeError):
        m.CompactRange(-1)


def test_range_nodes_tile_a_range() -> None:
    assert m.range_nodes(0, 0) == ()
    assert m.range_nodes(0, 13) == (m.Node(3, 0), m.Node(2, 2), m.Node(0, 12))
    assert m.range_nodes(3, 9) == (m.Node(0, 3), m.Node(2, 1), m.Node(0, 8))
    with pytest.raises(TreeRangeError):
        m.range_nodes(5, 4)


def test_grow_is_append_of_each_leaf_hash_from_any_size() -> None:
    """CompactRange.grow (a witness's replay) keeps the same right edge as appending each
    leaf's hash, from every starting size."""
    data = [bytes([i]) * (i % 5 + 1) for i in range(70)]
    for start in (0, 1, 2, 3, 7, 8, 31, 33):
        slow, fast = m.CompactRange(), m.CompactRange()
        for d in data[:start]:
            slow.append(m.leaf_hash(d))
            fast.append(m.leaf_hash(d))
        for d in data[start:]:
            slow.append(m.leaf_hash(d))
        fast.grow(data[start:])
        assert (fast.size, fast.hashes, fast.root()) == (slow.size, slow.hashes, slow.root())
