"""RFC 9162 Merkle trees: tree heads, inclusion and consistency proofs, and the compact range.

The one name to import. The tree side (hashing, subtrees, heads, `CompactRange`) lives in
`merkle_tree`, the proofs in `merkle_proofs`; `MemoryTree`, a whole tree in memory for
tests, witnesses and small logs, is here, where both meet.

Hashing is RFC 9162 section 2.1.1 with SHA-256; proofs need only complete-subtree hashes
(a `SubtreeHashes` source: the registry's stored nodes, or `MemoryTree`); verification
returns None or raises `InclusionProofError` / `ConsistencyProofError`. Everything here is
pure: no storage, no clock, no global state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from numbind.protocol.log_errors import TreeRangeError
from numbind.protocol.merkle_proofs import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from numbind.protocol.merkle_tree import (
    EMPTY_ROOT,
    HASH_BYTES,
    MAX_TREE_SIZE,
    CompactRange,
    Node,
    SubtreeHashes,
    leaf_hash,
    node_hash,
    range_nodes,
    root_at,
    root_of,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MAX_TREE_SIZE",
    "CompactRange",
    "MemoryTree",
    "Node",
    "SubtreeHashes",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_at",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]


class MemoryTree:
    """Every complete subtree hash of a tree, in memory (about two hashes per leaf).

    A `SubtreeHashes` for tests, witnesses and small logs; it answers for any size up to
    the number of leaves appended so far.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = []
        self._edge = CompactRange()
        self.extend(leaves)

    @property
    def size(self) -> int:
        return self._edge.size

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; return its index."""
        for node, h in self._edge.append(leaf):
            if node.level == len(self._levels):
                self._levels.append([])
            self._levels[node.level].append(h)
        return self._edge.size - 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def subtree_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        out = []
        for node in nodes:
            if node.level < 0 or node.index < 0 or node.end > self.size:
                raise TreeRangeError(
                    f"subtree [{node.start}, {node.end}): beyond tree size {self.size}"
                )
            out.append(self._levels[node.level][node.index])
        return out

    def root(self, size: int | None = None) -> bytes:
        return self._edge.root() if size is None else root_at(self._within(size), self)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else self._within(size), self)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else self._within(size2)
        return consistency_proof(size1, size2, self)

    def _within(self, size: int) -> int:
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"tree size: got {size}, want 0..{self.size}")
        return size
