"""RFC 9162 Merkle trees, the tree side: hashing, complete subtrees, tree heads, and the
compact range. Proofs are in `merkle_proofs`; import both through `numbind.protocol.merkle`.

Hashing is RFC 9162 section 2.1.1 with SHA-256: a leaf is SHA-256(0x00 || data), an interior
node SHA-256(0x01 || left || right), the empty tree SHA-256(""). Everything here is pure:
no storage, no clock, no global state.

Every range a tree is made of splits into complete subtrees (`Node`s, largest first), and
its hash is theirs folded from the right; a `SubtreeHashes` source answers for complete
subtrees only (the registry from stored node hashes, `MemoryTree` from memory).

A `CompactRange` holds only the right edge of a tree (one hash per set bit of the size, at
most 64): appending a leaf costs O(1) amortised hashes and the root of the current size is
O(log n). The registry uses it to append 100,000 leaves without recomputing the tree, and
records the complete subtrees each append closes; a witness replays a log leaf by leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from numbind.protocol.log_errors import TreeRangeError

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "MAX_TREE_SIZE",
    "CompactRange",
    "Node",
    "SubtreeHashes",
    "check_size",
    "checked",
    "fill",
    "fold",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_at",
    "root_of",
]

HASH_BYTES = 32
# Tree sizes are uint64 in RFC 9162 and in every checkpoint a witness will see.
MAX_TREE_SIZE = 2**64 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_NODE + left + right).digest()


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """The complete subtree over leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


class SubtreeHashes(Protocol):
    """Where proof generation gets the hashes it needs.

    Contract: `subtree_hashes` MUST return, in the order asked, one 32-byte hash per node:
    the MTH of that node's 2**level leaves. It MUST raise `TreeRangeError` for a node that
    reaches beyond the tree it serves, never return a guess. Proof functions ask once per
    proof (O(log n) nodes, at most two per level), so a database can answer with one query.
    """

    def subtree_hashes(self, nodes: Sequence[Node]) -> Sequence[bytes]: ...


def range_nodes(start: int, end: int) -> tuple[Node, ...]:
    """The maximal complete subtrees that tile leaves [start, end), left to right.

    For the ranges a tree is made of (start a multiple of the power of two at or above
    end - start) they come largest first, and the range's MTH is their hashes folded from
    the right (`fold`).
    """
    if not 0 <= start <= end:
        raise TreeRangeError(f"leaf range [{start}, {end}): want 0 <= start <= end")
    out: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append(Node(level, start >> level))
        start += 1 << level
    return tuple(out)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 section 2.1.1), in O(log n) memory."""
    edge = CompactRange()
    for h in leaf_hashes:
        edge.append(h)
    return edge.root()


def root_at(size: int, source: SubtreeHashes) -> bytes:
    """MTH of the first `size` leaves of the tree `source` serves."""
    check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return fill([range_nodes(0, size)], source)[0]


class CompactRange:
    """The right edge of a tree of `size` leaves: the hashes of the maximal complete
    subtrees of [0, size), largest first (one per set bit of `size`).

    Persist (`size`, `hashes`) to resume appending later; `from_source` rebuilds the edge of
    an existing tree from stored subtree hashes.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        check_size(size, "tree size")
        if len(hashes) != size.bit_count():
            raise TreeRangeError(
                f"compact range of size {size}: got {len(hashes)} hashes, want {size.bit_count()}"
            )
        for i, h in enumerate(hashes):
            if len(h) != HASH_BYTES:
                raise TreeRangeError(f"compact range hash {i}: got {len(h)} bytes, want 32")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def from_source(cls, size: int, source: SubtreeHashes) -> CompactRange:
        check_size(size, "tree size")
        nodes = range_nodes(0, size)
        return cls(size, checked(source, nodes))

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add one leaf hash; return the complete subtrees it closes, the leaf first, each
        as (node, hash), so a caller can store them for later proofs."""
        if len(leaf) != HASH_BYTES:
            raise TreeRangeError(f"leaf hash: got {len(leaf)} bytes, want 32")
        if self._size >= MAX_TREE_SIZE:
            raise TreeRangeError(f"tree size: already {MAX_TREE_SIZE}, the largest")
        index, h, level, rest = self._size, leaf, 0, self._size
        closed = [(Node(0, index), h)]
        while rest & 1:
            h = node_hash(self._hashes.pop(), h)
            rest, level = rest >> 1, level + 1
            closed.append((Node(level, index >> level), h))
        self._hashes.append(h)
        self._size += 1
        return closed

    def grow(self, leaf_data: Iterable[bytes]) -> None:
        """Append the leaves with these leaf data (each hashed as `leaf_hash`), keeping
        nothing but the right edge: `append` without the closed subtrees it returns, for a
        witness replaying tens of thousands of leaves (no Node per subtree, hashing inline)."""
        sha, hashes, size = hashlib.sha256, self._hashes, self._size
        for data in leaf_data:
            if size >= MAX_TREE_SIZE:
                raise TreeRangeError(f"tree size: already {MAX_TREE_SIZE}, the largest")
            h, rest = sha(_LEAF + data).digest(), size
            while rest & 1:
                h = sha(_NODE + hashes.pop() + h).digest()
                rest >>= 1
            hashes.append(h)
            size += 1
            self._size = size

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[Node, bytes]]:
        closed: list[tuple[Node, bytes]] = []
        for leaf in leaves:
            closed.extend(self.append(leaf))
        return closed

    def root(self) -> bytes:
        return fold(self._hashes) if self._hashes else EMPTY_ROOT


def fold(hashes: Sequence[bytes]) -> bytes:
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def fill(plan: list[tuple[Node, ...]], source: SubtreeHashes) -> list[bytes]:
    """The hash of each planned range: its complete subtrees, asked for in one batch."""
    got = checked(source, [node for entry in plan for node in entry])
    out, i = [], 0
    for entry in plan:
        out.append(fold(got[i : i + len(entry)]))
        i += len(entry)
    return out


def checked(source: SubtreeHashes, nodes: Sequence[Node]) -> list[bytes]:
    """Ask the source once, and hold it to its contract: a wrong answer is a bug in the
    source, never something to build a proof from."""
    got = list(source.subtree_hashes(nodes)) if nodes else []
    if len(got) != len(nodes) or any(len(h) != HASH_BYTES for h in got):
        raise ValueError(
            f"SubtreeHashes broke its contract: {len(got)} answers for {len(nodes)} nodes, "
            "each must be 32 bytes"
        )
    return got


def check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TreeRangeError(f"{what}: got {size}, want 0..2^64-1")
