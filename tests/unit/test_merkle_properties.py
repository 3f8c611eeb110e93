"""numbind.protocol.merkle, by property: roots at every size, and inclusion and consistency
proofs that verify, refuse any change, and keep their shape when only a size changes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import merkle as m
from numbind.protocol.log_errors import (
    ConsistencyProofError,
    InclusionProofError,
)

from tests.unit._merkle import flip, reference_mth


def _inclusion_shape(index: int, size: int) -> list[bool] | None:
    """Which side the verifier puts each proof hash on (RFC 9162 2.1.3.2), or None."""
    if not 0 <= index < size:
        return None
    fn, sn, sides = index, size - 1, []
    while sn:
        left = bool(fn & 1 or fn == sn)
        sides.append(left)
        if left:
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    return sides


def _same_inclusion_shape(index: int, size: int, other: int) -> bool:
    return _inclusion_shape(index, other) == _inclusion_shape(index, size)


def _consistency_shape(size1: int, size2: int) -> tuple[bool, list[str]] | None:
    if not 0 < size1 < size2:
        return None
    fn, sn, ops = size1 - 1, size2 - 1, []
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    while sn:
        both = bool(fn & 1 or fn == sn)
        ops.append("both" if both else "second")
        if both:
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    return size1 & (size1 - 1) == 0, ops


def _same_consistency_shape(a1: int, a2: int, b1: int, b2: int) -> bool:
    return _consistency_shape(a1, a2) == _consistency_shape(b1, b2)


def test_a_size_changed_alone_can_keep_the_proof_valid_so_sizes_travel_with_roots() -> None:
    # Leaf 0 of 4 and leaf 0 of 3 take their two proof hashes on the same sides, so the
    # proof for size 4 also "verifies" as size 3 under the size-4 root: the verifier cannot
    # tell the subtree hash h(2,3) from a leaf hash. This is RFC 9162's, not ours; it is why
    # size and root are only ever taken together from one signed checkpoint.
    leaves = [m.leaf_hash(bytes([i])) for i in range(4)]
    tree = m.MemoryTree(leaves)
    proof = tree.inclusion_proof(0, 4)
    m.verify_inclusion(leaves[0], 0, 3, proof, tree.root(4))
    with pytest.raises(InclusionProofError, match="leaf 0 of 3: computed root"):
        m.verify_inclusion(leaves[0], 0, 3, proof, tree.root(3))


# Properties over random trees of up to a few hundred leaves.

# Distinct leaves: two equal leaves legitimately share proofs (swap their indices and all holds).
_LEAVES = st.lists(st.binary(min_size=0, max_size=8), min_size=1, max_size=300, unique=True)


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = [m.leaf_hash(x) for x in draw(_LEAVES)]
    size = draw(st.integers(min_value=1, max_value=len(leaves)))
    return leaves, draw(st.integers(min_value=0, max_value=size - 1)), size


@st.composite
def _tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = [m.leaf_hash(x) for x in draw(_LEAVES)]
    size2 = draw(st.integers(min_value=1, max_value=len(leaves)))
    return leaves, draw(st.integers(min_value=1, max_value=size2)), size2


@settings(max_examples=40, deadline=None)
@given(_LEAVES)
def test_incremental_root_equals_full_mth_at_every_size(data: list[bytes]) -> None:
    leaves = [m.leaf_hash(x) for x in data]
    edge, tree = m.CompactRange(), m.MemoryTree()
    assert edge.root() == m.EMPTY_ROOT
    for n, leaf in enumerate(leaves, start=1):
        edge.append(leaf)
        tree.append(leaf)
        want = reference_mth(leaves[:n])
        assert edge.root() == want
        assert tree.root() == want
        assert len(edge.hashes) == bin(n).count("1")
    assert m.root_of(leaves) == reference_mth(leaves)


@settings(max_examples=150, deadline=None)
@given(_tree_and_index(), st.data())
def test_inclusion_proofs_verify_and_any_change_is_refused(
    case: tuple[list[bytes], int, int], data: st.DataObject
) -> None:
    leaves, index, size = case
    tree = m.MemoryTree(leaves)
    proof, root = tree.inclusion_proof(index, size), tree.root(size)
    m.verify_inclusion(leaves[index], index, size, proof, root)

    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="entry")
        pos = data.draw(st.integers(0, 31), label="byte")
        xor = data.draw(st.integers(1, 255), label="xor")
        bad = [*proof[:i], flip(proof[i], pos, xor), *proof[i + 1 :]]
        with pytest.raises(InclusionProofError):
            m.verify_inclusion(leaves[index], index, size, bad, root)
    pos, xor = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
    with pytest.raises(InclusionProofError):
        m.verify_inclusion(leaves[index], index, size, proof, flip(root, pos, xor))
    other_index = data.draw(st.integers(0, 2 * size).filter(lambda x: x != index))
    with pytest.raises(InclusionProofError):
        m.verify_inclusion(leaves[index], other_index, size, proof, root)
    # A size travels with its root in a checkpoint: the proof for one tree head is refused
    # against any other.
    other_size = data.draw(st.integers(1, len(leaves)).filter(lambda x: x != size))
    with pytest.raises(InclusionProofError):
        m.verify_inclusion(leaves[index], index, other_size, proof, tree.root(other_size))
    # With the root left as it was, another size is refused whenever the path changes
    # shape; where it keeps its shape no RFC 9162 verifier can tell (see the next test).
    other_size = data.draw(st.integers(0, 2 * size + 2).filter(lambda x: x != size))
    if not _same_inclusion_shape(index, size, other_size):
        with pytest.raises(InclusionProofError):
            m.verify_inclusion(leaves[index], index, other_size, proof, root)


@settings(max_examples=150, deadline=None)
@given(_tree_and_sizes(), st.data())
def test_consistency_proofs_verify_and_any_change_is_refused(
    case: tuple[list[bytes], int, int], data: st.DataObject
) -> None:
    leaves, size1, size2 = case
    tree = m.MemoryTree(leaves)
    proof = tree.consistency_proof(size1, size2)
    root1, root2 = tree.root(size1), tree.root(size2)
    m.verify_consistency(size1, size2, proof, root1, root2)

    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="entry")
        pos, xor = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
        bad = [*proof[:i], flip(proof[i], pos, xor), *proof[i + 1 :]]
        with pytest.raises(ConsistencyProofError):
            m.verify_consistency(size1, size2, bad, root1, root2)
    pos, xor = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, proof, flip(root1, pos, xor), root2)
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, proof, root1, flip(root2, pos, xor))
    # Either tree head swapped for another one of this log is refused (but the empty
    # tree, which is a prefix of every tree).
    other1 = data.draw(st.integers(1, len(leaves)).filter(lambda x: x != size1))
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(other1, size2, proof, tree.root(other1), root2)
    other2 = data.draw(st.integers(1, len(leaves)).filter(lambda x: x != size2))
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, other2, proof, root1, tree.root(other2))
    # A size changed alone (its root kept) is refused whenever the proof changes shape.
    other1 = data.draw(st.integers(0, 2 * size2).filter(lambda x: x != size1))
    if not _same_consistency_shape(size1, size2, other1, size2):
        with pytest.raises(ConsistencyProofError):
            m.verify_consistency(other1, size2, proof, root1, root2)
    other2 = data.draw(st.integers(0, 2 * size2 + 2).filter(lambda x: x != size2))
    if not _same_consistency_shape(size1, size2, size1, other2):
        with pytest.raises(ConsistencyProofError):
            m.verify_consistency(size1, other2, proof, root1, root2)


@settings(max_examples=40, deadline=None)
@given(_LEAVES)
def test_consistency_between_every_pair_of_sizes(data: list[bytes]) -> None:
    leaves = [m.leaf_hash(x) for x in data][:64]
    tree = m.MemoryTree(leaves)
    roots = [tree.root(n) for n in range(len(leaves) + 1)]
    for size2 in range(len(leaves) + 1):
        for size1 in range(size2 + 1):
            proof = tree.consistency_proof(size1, size2)
            m.verify_consistency(size1, size2, proof, roots[size1], roots[size2])
