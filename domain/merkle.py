"""RFC 9162 (Certificate Transparency v2) Merkle tree algorithms, stdlib only.

Hashing (section 2.1.1): MTH({}) = SHA-256(""), leaf = SHA-256(0x00 || d),
node = SHA-256(0x01 || left || right); a tree of n > 1 leaves splits at k, the largest
power of two smaller than n. Proofs (2.1.3 inclusion, 2.1.4 consistency) are lists of
subtree hashes, deepest first, in the RFC's wire order; the verifiers are the RFC's
algorithms (2.1.3.2, 2.1.4.2) transcribed.

Storage-friendly form: every subtree a proof needs is a range [start, end) of leaves that
the RFC recursion produces, and each such range is a run of *complete, aligned* subtrees
(2^level leaves starting at index * 2^level). A store that keeps every complete node
(`NodeKey` = (level, index); level 0 are the leaf hashes) answers any proof with
O(log^2 n) lookups: `inclusion_proof_plan` / `consistency_proof_plan` say which nodes, and
`hash_from_nodes` folds them. `Frontier` appends leaves one at a time, keeps only the
O(log n) right-most complete subtrees and reports each node it completes, so a log can be
hashed incrementally and durably.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from domain.audit_log import leaf_hash, node_hash

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]  # (level, index): leaves [index << level, (index + 1) << level)


class ProofError(ValueError):
    """A proof request outside the tree (bad index or sizes)."""


def _split(n: int) -> int:
    """k: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_nodes(start: int, end: int) -> list[NodeKey]:
    """The complete aligned subtrees whose fold is MTH(D[start:end]), left to right.

    Defined for the ranges the RFC recursion produces (start aligned to the first block)."""
    if not 0 <= start < end:
        raise ProofError(f"empty or negative range [{start}, {end})")
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        keys.append((level, start >> level))
        start += 1 << level
    if len(keys) > 1 and keys[0][0] < keys[1][0]:
        raise ProofError("range is not one the RFC recursion produces")
    return keys


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive complete subtrees of decreasing size: node(h1, node(h2, ...))."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def hash_from_nodes(keys: Sequence[NodeKey], nodes: Mapping[NodeKey, bytes]) -> bytes:
    return fold_subtrees([nodes[key] for key in keys])


def _inclusion_ranges(index: int, start: int, end: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()  # deepest first
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    # SUBPROOF(m, D[start:end], b), RFC 9162 section 2.1.4.1, unrolled.
    ranges: list[tuple[int, int]] = []
    m, start, end, complete = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            m -= k
            start += k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_proof_plan(index: int, size: int) -> list[list[NodeKey]]:
    """For each element of PATH(index, D[size]): the stored nodes that fold into it."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    return [subtree_nodes(start, end) for start, end in _inclusion_ranges(index, 0, size)]


def consistency_proof_plan(old_size: int, new_size: int) -> list[list[NodeKey]]:
    """For each element of PROOF(old_size, D[new_size]): the stored nodes that fold into it."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    return [subtree_nodes(start, end) for start, end in _consistency_ranges(old_size, new_size)]


def root_plan(size: int) -> list[NodeKey]:
    return subtree_nodes(0, size) if size else []


def plan_keys(plan: Iterable[Sequence[NodeKey]]) -> set[NodeKey]:
    return {key for element in plan for key in element}


def proof_from_plan(
    plan: Sequence[Sequence[NodeKey]], nodes: Mapping[NodeKey, bytes]
) -> list[bytes]:
    return [hash_from_nodes(element, nodes) for element in plan]


# ---- in-memory tree (tests, small verifiers) ---------------------------------------------


class MemoryTree:
    """Every node of a tree held in memory; answers proofs through the same plans a
    database-backed tree uses."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.nodes: dict[NodeKey, bytes] = {}
        self.frontier = Frontier()
        for value in leaf_hashes:
            self.append_hash(value)

    @property
    def size(self) -> int:
        return self.frontier.size

    def append_leaf(self, leaf: bytes) -> None:
        self.append_hash(leaf_hash(leaf))

    def append_hash(self, value: bytes) -> None:
        for key, node in self.frontier.append(value):
            self.nodes[key] = node

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"size {size} beyond the tree ({self.size})")
        return hash_from_nodes(root_plan(size), self.nodes) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return proof_from_plan(
            inclusion_proof_plan(index, self.size if size is None else size), self.nodes
        )

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        if new_size > self.size:
            raise ProofError(f"size {new_size} beyond the tree ({self.size})")
        return proof_from_plan(consistency_proof_plan(old_size, new_size), self.nodes)


class Frontier:
    """The compact range [0, size): the right-most complete subtree at each set bit of size.

    `append` returns the nodes the new leaf completes (its own leaf node first), so the
    caller can store them; `root` is MTH of the leaves appended so far."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        keys = root_plan(size)
        if len(keys) != len(hashes):
            raise ProofError(f"a frontier of size {size} has {len(keys)} nodes, not {len(hashes)}")
        self.size = size
        self._stack: list[tuple[int, bytes]] = [
            (level, value) for (level, _), value in zip(keys, hashes, strict=True)
        ]

    @staticmethod
    def keys_for(size: int) -> list[NodeKey]:
        return root_plan(size)

    def append(self, value: bytes) -> list[tuple[NodeKey, bytes]]:
        index = self.size
        completed: list[tuple[NodeKey, bytes]] = [((0, index), value)]
        level = 0
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            value = node_hash(left, value)
            level += 1
            completed.append(((level, index >> level), value))
        self._stack.append((level, value))
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        return fold_subtrees([value for _, value in self._stack])

    def hashes(self) -> list[bytes]:
        return [value for _, value in self._stack]


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for value in leaf_hashes:
        frontier.append(value)
    return frontier.root()


# ---- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) --------------------------------


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies for `leaf` (a leaf HASH) at `index`; raises
    ProofError if the proof has the wrong shape for (index, size)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, result = index, size - 1, leaf
    for element in proof:
        if sn == 0:
            raise ProofError("inclusion proof longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(element, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof shorter than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ProofError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for element in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(element, first)
            second = node_hash(element, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, element)
        fn >>= 1
        sn >>= 1
    return sn == 0 and first == old_root and second == new_root
