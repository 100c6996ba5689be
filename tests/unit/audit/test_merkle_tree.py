"""RFC 9162 tree algorithms: the Certificate Transparency test vectors, and every proof for
small trees checked against a direct transcription of the RFC's recursive definitions."""

from __future__ import annotations

import hashlib

import pytest

from domain.audit_log import leaf_hash, node_hash
from domain.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    ProofError,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# The CT/trillian test leaves and their roots for sizes 1..8 (RFC 6962 test data).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _k(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = _k(len(leaves))
    return node_hash(rfc_mth(leaves[:k]), rfc_mth(leaves[k:]))


def rfc_path(m, leaves):
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return rfc_path(m, leaves[:k]) + [rfc_mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [rfc_mth(leaves[:k])]


def rfc_subproof(m, leaves, complete):
    n = len(leaves)
    if m == n:
        return [] if complete else [rfc_mth(leaves)]
    k = _k(n)
    if m <= k:
        return rfc_subproof(m, leaves[:k], complete) + [rfc_mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [rfc_mth(leaves[:k])]


def test_roots_equal_the_certificate_transparency_test_vectors():
    tree = MemoryTree()
    for size, leaf in enumerate(CT_LEAVES, start=1):
        tree.append_leaf(leaf)
        assert tree.root().hex() == CT_ROOTS[size - 1]
        assert rfc_mth(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]
    assert MemoryTree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_the_inclusion_proof_of_leaf_0_in_the_8_leaf_vector_tree_is_the_published_one():
    tree = MemoryTree(leaf_hash(leaf) for leaf in CT_LEAVES)
    assert [h.hex() for h in tree.inclusion_proof(0, 8)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


def test_every_proof_up_to_size_40_matches_the_rfc_definitions_and_verifies():
    leaves = [b"leaf-%d" % i for i in range(40)]
    tree = MemoryTree(leaf_hash(leaf) for leaf in leaves)
    for size in range(1, 41):
        root = tree.root(size)
        assert root == rfc_mth(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == rfc_path(index, leaves[:size])
            assert verify_inclusion(index, size, leaf_hash(leaves[index]), proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == rfc_subproof(old, leaves[:size], True)
            assert verify_consistency(old, size, tree.root(old), root, proof)


def test_altered_proofs_leaves_roots_and_sizes_are_rejected():
    leaves = [b"x%d" % i for i in range(23)]
    tree = MemoryTree(leaf_hash(leaf) for leaf in leaves)
    size, root = 23, tree.root()
    flipped = bytes([root[0] ^ 1]) + root[1:]
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        good_leaf = leaf_hash(leaves[index])
        assert not verify_inclusion(index, size, leaf_hash(b"other"), proof, root)
        assert not verify_inclusion(index, size, good_leaf, proof, flipped)
        assert not verify_inclusion((index + 1) % size, size, good_leaf, proof, root)
        # A size of another depth (the size itself is bound by the signed checkpoint).
        assert not verify_inclusion(index, size * 4, good_leaf, proof, root)
        assert not verify_inclusion(index, size, good_leaf, proof[:-1], root)
        assert not verify_inclusion(index, size, good_leaf, proof + [root], root)
        for position in range(len(proof)):
            bad = list(proof)
            bad[position] = bytes([bad[position][5] ^ 0x80]) + bad[position][1:]
            assert not verify_inclusion(index, size, good_leaf, bad, root)
    for old in range(1, size):
        proof = tree.consistency_proof(old, size)
        old_root = tree.root(old)
        assert not verify_consistency(old, size, old_root, flipped, proof)
        assert not verify_consistency(old, size, flipped, root, proof)
        assert not verify_consistency(old, size, old_root, root, proof[:-1])
        assert not verify_consistency(old + 1, size, old_root, root, proof) or (
            tree.root(old + 1) == old_root
        )


def test_degenerate_consistency_cases_follow_the_rfc():
    tree = MemoryTree(leaf_hash(b"%d" % i) for i in range(5))
    assert verify_consistency(5, 5, tree.root(), tree.root(), [])
    assert not verify_consistency(5, 5, tree.root(), tree.root(4), [])
    assert verify_consistency(0, 5, EMPTY_ROOT, tree.root(), [])
    assert not verify_consistency(3, 2, tree.root(3), tree.root(2), [])
    assert not verify_consistency(2, 5, tree.root(2), tree.root(), [])
    with pytest.raises(ProofError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ProofError):
        tree.consistency_proof(4, 9)


def test_a_frontier_rebuilt_from_its_stored_nodes_continues_the_same_tree():
    hashes = [leaf_hash(b"%d" % i) for i in range(77)]
    whole = Frontier()
    for value in hashes:
        whole.append(value)
    for cut in (0, 1, 2, 31, 32, 33, 64, 76):
        partial = MemoryTree(hashes[:cut])
        resumed = Frontier(cut, [partial.nodes[key] for key in Frontier.keys_for(cut)])
        for value in hashes[cut:]:
            resumed.append(value)
        assert resumed.root() == whole.root() == root_hash(hashes)
