"""RFC 9162 Merkle trees: tree heads, inclusion and consistency proofs, and the compact range.

Hashing is RFC 9162 section 2.1.1 with SHA-256: a leaf is SHA-256(0x00 || data), an interior
node SHA-256(0x01 || left || right), the empty tree SHA-256(""). Everything here is pure:
no storage, no clock, no global state.

Proof generation never needs the leaves. Every proof entry is the hash of a subtree
[k * 2**j, min((k + 1) * 2**j, n)); that range splits into complete subtrees (`Node`s,
largest first), and its hash is theirs folded from the right. So a proof only asks a
`SubtreeHashes` source for the hashes of complete subtrees, in one batch: the registry backs
it with stored node hashes, `MemoryTree` with lists in memory.

A `CompactRange` holds only the right edge of a tree (one hash per set bit of the size, at
most 64): appending a leaf costs O(1) amortised hashes and the root of the current size is
O(log n). The registry uses it to append 100,000 leaves without recomputing the tree, and
records the complete subtrees each append closes; a witness replays a log leaf by leaf.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, after checking
that the proof has the exact number of hashes the (index, size) or (size1, size2) pair
calls for. It returns None or raises `InclusionProofError` / `ConsistencyProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from numbind.protocol.log_errors import (
    ConsistencyProofError,
    InclusionProofError,
    TreeRangeError,
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
    the right (`_fold`).
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
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return _fill([range_nodes(0, size)], source)[0]


def inclusion_proof(index: int, size: int, source: SubtreeHashes) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, deepest sibling first."""
    _check_size(size, "tree size")
    if not 0 <= index < size:
        raise TreeRangeError(f"leaf index: got {index}, want 0..{size - 1} (tree size {size})")
    return _fill(_plan(_inclusion_split(index, size)), source)


def consistency_proof(size1: int, size2: int, source: SubtreeHashes) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 section 2.1.4.1; empty if size1 is 0 or size2."""
    _check_size(size2, "tree size")
    if not 0 <= size1 <= size2:
        raise TreeRangeError(f"old tree size: got {size1}, want 0..{size2}")
    if size1 in (0, size2):
        return []
    return _fill(_plan(_consistency_split(size1, size2)), source)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf` (a leaf hash) is leaf `index` of the tree of `size` with `root`.

    RFC 9162 section 2.1.3.2. Raises InclusionProofError naming what failed.
    """
    where = f"inclusion proof for leaf {index} of {size}"
    _check_hashes(InclusionProofError, where, leaf=leaf, root=root, proof=proof)
    if not 0 <= size <= MAX_TREE_SIZE or not 0 <= index < size:
        raise InclusionProofError(f"{where}: leaf index not in 0..size-1")
    want = len(_inclusion_split(index, size))
    if len(proof) != want:
        raise InclusionProofError(f"{where}: proof has {len(proof)} hashes, want {want}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # unreachable when the length matched; kept as RFC 9162 step 5
        raise InclusionProofError(f"{where}: proof ended before the root")
    if r != root:
        raise InclusionProofError(f"{where}: computed root {r.hex()}, want {root.hex()}")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of `size1` with `root1` is a prefix of the tree of `size2`
    with `root2`.

    RFC 9162 section 2.1.4.2, extended as every log client does: between equal sizes the
    proof is empty and the roots are equal; from size 0 the proof is empty and `root1` is
    the empty tree's. A size2 below size1 (a rollback) is refused.
    """
    where = f"consistency proof from size {size1} to {size2}"
    _check_hashes(ConsistencyProofError, where, root1=root1, root2=root2, proof=proof)
    if not 0 <= size1 <= size2 <= MAX_TREE_SIZE:
        raise ConsistencyProofError(f"{where}: want 0 <= size1 <= size2 <= 2^64-1")
    want = 0 if size1 in (0, size2) else len(_consistency_split(size1, size2))
    if len(proof) != want:
        raise ConsistencyProofError(f"{where}: proof has {len(proof)} hashes, want {want}")
    if size1 == size2 and root1 != root2:
        raise ConsistencyProofError(
            f"{where}: same size, different roots {root1.hex()} and {root2.hex()}"
        )
    if size1 == 0 and root1 != EMPTY_ROOT:
        raise ConsistencyProofError(
            f"{where}: old root {root1.hex()}, want the empty tree's {EMPTY_ROOT.hex()}"
        )
    if size1 in (0, size2):
        return
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # unreachable when the length matched; kept as RFC 9162 step 7
        raise ConsistencyProofError(f"{where}: proof ended before the new root")
    if fr != root1:
        raise ConsistencyProofError(f"{where}: computed old root {fr.hex()}, want {root1.hex()}")
    if sr != root2:
        raise ConsistencyProofError(f"{where}: computed new root {sr.hex()}, want {root2.hex()}")


class CompactRange:
    """The right edge of a tree of `size` leaves: the hashes of the maximal complete
    subtrees of [0, size), largest first (one per set bit of `size`).

    Persist (`size`, `hashes`) to resume appending later; `from_source` rebuilds the edge of
    an existing tree from stored subtree hashes.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size(size, "tree size")
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
        _check_size(size, "tree size")
        nodes = range_nodes(0, size)
        return cls(size, _checked(source, nodes))

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

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[Node, bytes]]:
        closed: list[tuple[Node, bytes]] = []
        for leaf in leaves:
            closed.extend(self.append(leaf))
        return closed

    def root(self) -> bytes:
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT


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


def _inclusion_split(index: int, size: int) -> list[tuple[int, int]]:
    """The sibling ranges of PATH(index, D[0:size]), top first."""
    ranges = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    return ranges


def _consistency_split(size1: int, size2: int) -> list[tuple[int, int]]:
    """The ranges of SUBPROOF(size1, D[0:size2], true), top first; 0 < size1 < size2."""
    ranges = []
    start, end, m, whole = 0, size2, size1, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        ranges.append((start, end))
    return ranges


def _plan(ranges: list[tuple[int, int]]) -> list[tuple[Node, ...]]:
    """The complete subtrees of each proof range, in proof order (deepest first)."""
    return [range_nodes(s, e) for s, e in reversed(ranges)]


def _split(n: int) -> int:
    """The largest power of two below n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold(hashes: Sequence[bytes]) -> bytes:
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _fill(plan: list[tuple[Node, ...]], source: SubtreeHashes) -> list[bytes]:
    got = _checked(source, [node for entry in plan for node in entry])
    out, i = [], 0
    for entry in plan:
        out.append(_fold(got[i : i + len(entry)]))
        i += len(entry)
    return out


def _checked(source: SubtreeHashes, nodes: Sequence[Node]) -> list[bytes]:
    """Ask the source once, and hold it to its contract: a wrong answer is a bug in the
    source, never something to build a proof from."""
    got = list(source.subtree_hashes(nodes)) if nodes else []
    if len(got) != len(nodes) or any(len(h) != HASH_BYTES for h in got):
        raise ValueError(
            f"SubtreeHashes broke its contract: {len(got)} answers for {len(nodes)} nodes, "
            "each must be 32 bytes"
        )
    return got


def _check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TreeRangeError(f"{what}: got {size}, want 0..2^64-1")


def _check_hashes(
    error: type[InclusionProofError | ConsistencyProofError],
    where: str,
    proof: Sequence[bytes],
    **named: bytes,
) -> None:
    for name, h in named.items():
        if len(h) != HASH_BYTES:
            raise error(f"{where}: {name} is {len(h)} bytes, want 32")
    for i, h in enumerate(proof):
        if len(h) != HASH_BYTES:
            raise error(f"{where}: proof hash {i} is {len(h)} bytes, want 32")
