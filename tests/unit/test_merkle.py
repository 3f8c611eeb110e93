"""RFC 9162 Merkle trees: the shared vectors, tampering, properties, the compact range and
the SubtreeHashes contract."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numbind.protocol import merkle as m
from numbind.protocol.log_errors import (
    ConsistencyProofError,
    InclusionProofError,
    LogError,
    ProofError,
    TreeRangeError,
)

_VECTOR_FILE = "rfc9162_merkle_and_c2sp_note.json"


def _vector_path() -> Path:
    path = Path(__file__).resolve().parents[3] / "shared" / "vectors" / _VECTOR_FILE
    env = os.environ.get("NUMBIND_VECTORS")
    if not path.is_file() and env:
        path = Path(env)
        if path.is_dir():
            path = path / _VECTOR_FILE
    return path


def _vectors() -> dict[str, Any]:
    path = _vector_path()
    if not path.is_file():
        pytest.fail(f"vector file not found at {path} (set NUMBIND_VECTORS)")
    merkle: dict[str, Any] = json.loads(path.read_text())["merkle"]
    return merkle


def _cases(kind: str) -> list[Any]:
    path = _vector_path()
    if not path.is_file():
        # A missing file must fail the run, not skip it (an empty parametrize skips).
        return [pytest.param(None, id="vector-file-missing")]
    data = json.loads(path.read_text())["merkle"][kind]
    if kind == "inclusion":
        return [pytest.param(c, id=f"leaf{c['leaf_index']}-of-{c['tree_size']}") for c in data]
    return [pytest.param(c, id=f"{c['size1']}-to-{c['size2']}") for c in data]


def _reference_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 written out recursively over leaf hashes, sharing no code
    with the module under test."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    left, right = _reference_mth(leaves[:k]), _reference_mth(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def _vector_tree() -> tuple[list[bytes], m.MemoryTree]:
    leaves = [m.leaf_hash(bytes.fromhex(x)) for x in _vectors()["leaves"]]
    return leaves, m.MemoryTree(leaves)


def _flip(data: bytes, pos: int, xor: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ xor]) + data[pos + 1 :]


def test_vector_prefixes_and_hash_functions() -> None:
    v = _vectors()
    assert (v["hash"], v["leaf_prefix"], v["node_prefix"]) == ("SHA-256", "00", "01")
    assert m.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        m.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert m.EMPTY_ROOT.hex() == v["roots"][0]


def test_every_vector_root() -> None:
    v = _vectors()
    leaves, tree = _vector_tree()
    assert len(v["roots"]) == len(leaves) + 1
    for size, want in enumerate(v["roots"]):
        assert m.root_of(leaves[:size]).hex() == want, size
        assert tree.root(size).hex() == want, size
        assert m.root_at(size, tree).hex() == want, size
        assert _reference_mth(leaves[:size]).hex() == want, size


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_vector_inclusion_proof(case: dict[str, Any] | None) -> None:
    if case is None:
        pytest.fail(f"vector file not found at {_vector_path()} (set NUMBIND_VECTORS)")
    leaves, tree = _vector_tree()
    index, size = case["leaf_index"], case["tree_size"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert tree.inclusion_proof(index, size) == want
    root = bytes.fromhex(_vectors()["roots"][size])
    m.verify_inclusion(leaves[index], index, size, want, root)

    for i, entry in enumerate(want):
        for pos in (0, 31):
            bad = [*want[:i], _flip(entry, pos), *want[i + 1 :]]
            with pytest.raises(InclusionProofError, match="computed root"):
                m.verify_inclusion(leaves[index], index, size, bad, root)
    with pytest.raises(InclusionProofError, match=f"leaf {index} of {size}: computed root"):
        m.verify_inclusion(leaves[index], index, size, want, _flip(root, 7))
    with pytest.raises(InclusionProofError, match="computed root"):
        m.verify_inclusion(_flip(leaves[index], 0), index, size, want, root)
    with pytest.raises(InclusionProofError, match="hashes, want"):
        m.verify_inclusion(leaves[index], index, size, [*want, root], root)
    with pytest.raises(InclusionProofError, match=re.escape("not in 0..size-1")):
        m.verify_inclusion(leaves[index], size, size, want, root)
    for other in range(size):
        if other != index:
            with pytest.raises(InclusionProofError):
                m.verify_inclusion(leaves[index], other, size, want, root)


def test_the_two_published_inclusion_proofs() -> None:
    # Index 0 and 5 of size 8, as implementations print them.
    _, tree = _vector_tree()
    by_case = {(c["leaf_index"], c["tree_size"]): c["proof"] for c in _vectors()["inclusion"]}
    for index in (0, 5):
        assert [h.hex() for h in tree.inclusion_proof(index, 8)] == by_case[(index, 8)]
        assert len(by_case[(index, 8)]) == 3


@pytest.mark.parametrize("case", _cases("consistency"))
def test_vector_consistency_proof(case: dict[str, Any] | None) -> None:
    if case is None:
        pytest.fail(f"vector file not found at {_vector_path()} (set NUMBIND_VECTORS)")
    _, tree = _vector_tree()
    roots = [bytes.fromhex(r) for r in _vectors()["roots"]]
    size1, size2 = case["size1"], case["size2"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert tree.consistency_proof(size1, size2) == want
    m.verify_consistency(size1, size2, want, roots[size1], roots[size2])

    for i, entry in enumerate(want):
        bad = [*want[:i], _flip(entry, 13), *want[i + 1 :]]
        with pytest.raises(ConsistencyProofError, match="computed"):
            m.verify_consistency(size1, size2, bad, roots[size1], roots[size2])
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, want, _flip(roots[size1], 0), roots[size2])
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, want, roots[size1], _flip(roots[size2], 31))
    with pytest.raises(ConsistencyProofError, match="hashes, want"):
        m.verify_consistency(size1, size2, [*want, roots[0]], roots[size1], roots[size2])
    if size1 < size2:
        # A rollback: the newer tree presented as the older one.
        with pytest.raises(ConsistencyProofError, match="size1 <= size2"):
            m.verify_consistency(size2, size1, want, roots[size2], roots[size1])


def test_consistency_from_the_empty_tree_and_between_equal_sizes() -> None:
    _, tree = _vector_tree()
    root5 = tree.root(5)
    assert tree.consistency_proof(0, 5) == []
    m.verify_consistency(0, 5, [], m.EMPTY_ROOT, root5)
    with pytest.raises(ConsistencyProofError, match="empty tree"):
        m.verify_consistency(0, 5, [], root5, root5)
    with pytest.raises(ConsistencyProofError, match="want 0"):
        m.verify_consistency(0, 5, [root5], m.EMPTY_ROOT, root5)
    m.verify_consistency(5, 5, [], root5, root5)
    with pytest.raises(ConsistencyProofError, match="same size, different roots"):
        m.verify_consistency(5, 5, [], root5, tree.root(6))


def test_malformed_hashes_are_named() -> None:
    leaves, tree = _vector_tree()
    proof, root = tree.inclusion_proof(5, 8), tree.root(8)
    with pytest.raises(InclusionProofError, match="proof hash 1 is 31 bytes"):
        m.verify_inclusion(leaves[5], 5, 8, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(InclusionProofError, match="root is 33 bytes"):
        m.verify_inclusion(leaves[5], 5, 8, proof, root + b"\x00")
    with pytest.raises(ConsistencyProofError, match="root1 is 0 bytes"):
        m.verify_consistency(3, 8, tree.consistency_proof(3, 8), b"", root)


def test_one_error_tree() -> None:
    assert issubclass(InclusionProofError, ProofError)
    assert issubclass(ConsistencyProofError, ProofError)
    assert issubclass(ProofError, LogError)
    assert issubclass(TreeRangeError, LogError)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    _, tree = _vector_tree()
    with pytest.raises(TreeRangeError, match=re.escape("leaf index: got 8, want 0..7")):
        tree.inclusion_proof(8)
    with pytest.raises(TreeRangeError, match=re.escape("tree size: got 9, want 0..8")):
        tree.inclusion_proof(0, 9)
    with pytest.raises(TreeRangeError, match=re.escape("old tree size: got 6, want 0..5")):
        tree.consistency_proof(6, 5)
    with pytest.raises(TreeRangeError):
        tree.root(9)
    with pytest.raises(TreeRangeError, match="beyond tree size 8"):
        tree.subtree_hashes([m.Node(3, 1)])
    with pytest.raises(TreeRangeError):
        m.inclusion_proof(-1, 8, tree)


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
    assert m.root_at(777, stored) == _reference_mth(leaves[:777])


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
    assert resumed.root() == _reference_mth(leaves)

    stored = _StoredNodes()
    stored.store(m.CompactRange().extend(leaves[:123]))
    rebuilt = m.CompactRange.from_source(123, stored)
    assert rebuilt.hashes == first.hashes
    closed = rebuilt.append(leaves[123])
    assert closed[0] == (m.Node(0, 123), leaves[123])
    # 123 = 0b1111011 ends in two ones: leaf 123 closes [122, 124) and [120, 124).
    assert [n for n, _ in closed] == [m.Node(0, 123), m.Node(1, 61), m.Node(2, 30)]
    assert closed[-1][1] == _reference_mth(leaves[120:124])


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
        want = _reference_mth(leaves[:n])
        assert edge.root() == want
        assert tree.root() == want
        assert len(edge.hashes) == bin(n).count("1")
    assert m.root_of(leaves) == _reference_mth(leaves)


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
        bad = [*proof[:i], _flip(proof[i], pos, xor), *proof[i + 1 :]]
        with pytest.raises(InclusionProofError):
            m.verify_inclusion(leaves[index], index, size, bad, root)
    pos, xor = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
    with pytest.raises(InclusionProofError):
        m.verify_inclusion(leaves[index], index, size, proof, _flip(root, pos, xor))
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
        bad = [*proof[:i], _flip(proof[i], pos, xor), *proof[i + 1 :]]
        with pytest.raises(ConsistencyProofError):
            m.verify_consistency(size1, size2, bad, root1, root2)
    pos, xor = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, proof, _flip(root1, pos, xor), root2)
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, proof, root1, _flip(root2, pos, xor))
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


def test_grow_is_append_of_each_leaf_hash_from_any_size() -> None:
    """CompactRange.grow (a witness's replay) keeps the same right edge as appending each
    leaf's hash, from every starting size."""
    from numbind.protocol.merkle import CompactRange, leaf_hash

    data = [bytes([i]) * (i % 5 + 1) for i in range(70)]
    for start in (0, 1, 2, 3, 7, 8, 31, 33):
        slow, fast = CompactRange(), CompactRange()
        for d in data[:start]:
            slow.append(leaf_hash(d))
            fast.append(leaf_hash(d))
        for d in data[start:]:
            slow.append(leaf_hash(d))
        fast.grow(data[start:])
        assert (fast.size, fast.hashes, fast.root()) == (slow.size, slow.hashes, slow.root())
