"""RFC 9162 Merkle trees: the shared vectors, tampering and refused requests. Stored nodes and
the compact range: test_merkle_stored.py; properties: test_merkle_properties.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from numbind.protocol import merkle as m
from numbind.protocol.log_errors import (
    ConsistencyProofError,
    InclusionProofError,
    LogError,
    ProofError,
    TreeRangeError,
)

from tests.unit._merkle import flip, reference_mth

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


def _vector_tree() -> tuple[list[bytes], m.MemoryTree]:
    leaves = [m.leaf_hash(bytes.fromhex(x)) for x in _vectors()["leaves"]]
    return leaves, m.MemoryTree(leaves)


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
        assert reference_mth(leaves[:size]).hex() == want, size


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
            bad = [*want[:i], flip(entry, pos), *want[i + 1 :]]
            with pytest.raises(InclusionProofError, match="computed root"):
                m.verify_inclusion(leaves[index], index, size, bad, root)
    with pytest.raises(InclusionProofError, match=f"leaf {index} of {size}: computed root"):
        m.verify_inclusion(leaves[index], index, size, want, flip(root, 7))
    with pytest.raises(InclusionProofError, match="computed root"):
        m.verify_inclusion(flip(leaves[index], 0), index, size, want, root)
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
        bad = [*want[:i], flip(entry, 13), *want[i + 1 :]]
        with pytest.raises(ConsistencyProofError, match="computed"):
            m.verify_consistency(size1, size2, bad, roots[size1], roots[size2])
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, want, flip(roots[size1], 0), roots[size2])
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(size1, size2, want, roots[size1], flip(roots[size2], 31))
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
