"""RFC 9162 Merkle proofs: inclusion and consistency, generated and verified.

Proof generation never needs the leaves. Every proof entry is the hash of a subtree
[k * 2**j, min((k + 1) * 2**j, n)); that range splits into complete subtrees, so a proof
asks a `SubtreeHashes` source once for O(log n) complete-subtree hashes (`merkle_tree`).

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, after checking
that the proof has the exact number of hashes the (index, size) or (size1, size2) pair
calls for. It returns None or raises `InclusionProofError` / `ConsistencyProofError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from numbind.protocol.log_errors import (
    ConsistencyProofError,
    InclusionProofError,
    TreeRangeError,
)
from numbind.protocol.merkle_tree import (
    EMPTY_ROOT,
    HASH_BYTES,
    MAX_TREE_SIZE,
    Node,
    SubtreeHashes,
    check_size,
    fill,
    node_hash,
    range_nodes,
)

__all__ = ["consistency_proof", "inclusion_proof", "verify_consistency", "verify_inclusion"]


def inclusion_proof(index: int, size: int, source: SubtreeHashes) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, deepest sibling first."""
    check_size(size, "tree size")
    if not 0 <= index < size:
        raise TreeRangeError(f"leaf index: got {index}, want 0..{size - 1} (tree size {size})")
    return fill(_plan(_inclusion_split(index, size)), source)


def consistency_proof(size1: int, size2: int, source: SubtreeHashes) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 section 2.1.4.1; empty if size1 is 0 or size2."""
    check_size(size2, "tree size")
    if not 0 <= size1 <= size2:
        raise TreeRangeError(f"old tree size: got {size1}, want 0..{size2}")
    if size1 in (0, size2):
        return []
    return fill(_plan(_consistency_split(size1, size2)), source)


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
