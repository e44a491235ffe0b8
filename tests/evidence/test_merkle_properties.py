"""Merkle properties against the spec-literal oracle (``rfc_oracle``), and the §1.8 pitfalls.

Sizes: every size up to 40 exhaustively, plus seeded random sizes up to 300 (all indices,
all first sizes). Proofs are generated from the perfect nodes :class:`CompactRange`
reported, as a store would answer them, and must equal the RFC recursion's output.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import pytest
import rfc_oracle

from protocolo.evidence.errors import ProofError
from protocolo.evidence.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeId,
    consistency_nodes,
    consistency_proof,
    expected_consistency_length,
    expected_inclusion_length,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_nodes,
    tree_root,
)
from protocolo.evidence.proof import verify_consistency, verify_inclusion, verify_range

_RANDOM = random.Random(6962)
SIZES = sorted(set(range(1, 41)) | set(_RANDOM.sample(range(41, 301), 6)) | {256, 300})


def _entries(size: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(size * 1000 + seed)
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(size)]


class Tree:
    """A tree built the way the ledger builds it: append leaf hashes, keep perfect nodes."""

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries
        self.store: dict[NodeId, bytes] = {}
        self.roots = [EMPTY_ROOT]
        self.reads: list[list[NodeId]] = []
        state = CompactRange()
        for entry in entries:
            for node, value in state.append(leaf_hash(entry)):
                assert node not in self.store, "a perfect node is completed only once"
                self.store[node] = value
            self.roots.append(state.root())

    def read(self, nodes: Sequence[NodeId]) -> list[bytes]:
        self.reads.append(list(nodes))
        return [self.store[n] for n in nodes]


def _flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for i in range(len(proof)):
        out.append(proof[:i] + [_flip(proof[i], i % 8)] + proof[i + 1 :])
        out.append(proof[:i] + proof[i + 1 :])
        out.append(proof[:i] + [proof[i], proof[i]] + proof[i + 1 :])
    out.append(proof + [EMPTY_ROOT])
    out.append([EMPTY_ROOT, *proof])
    if len(proof) > 1:
        out.append(list(reversed(proof)))
    return [m for m in out if m != proof]


@pytest.mark.parametrize("size", SIZES)
def test_roots_and_inclusion_proofs_match_the_rfc(size: int) -> None:
    tree = Tree(_entries(size))
    assert len(tree.store) == 2 * size - size.bit_count()  # the perfect nodes a store keeps
    for n in range(size + 1):
        assert tree.roots[n] == rfc_oracle.mth(tree.entries[:n])
    root = tree.roots[size]
    for index in range(size):
        tree.reads.clear()
        proof = inclusion_proof(index, size, tree.read)
        assert proof == rfc_oracle.path(index, tree.entries)
        assert len(proof) == expected_inclusion_length(index, size)
        # One read of O(log n) nodes: at most 2 per level (a sibling, or a compact range).
        assert len(tree.reads) == (1 if proof else 0)
        assert sum(len(r) for r in tree.reads) <= 2 * size.bit_length()
        leaf = leaf_hash(tree.entries[index])
        verify_inclusion(leaf, index, size, proof, root)
        for bad in _mutations(proof):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(_flip(leaf), index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, _flip(root))


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proofs_match_the_rfc(size: int) -> None:
    tree = Tree(_entries(size))
    root2 = tree.roots[size]
    for size1 in range(1, size + 1):
        tree.reads.clear()
        proof = consistency_proof(size1, size, tree.read)
        root1 = tree.roots[size1]
        if size1 == size:
            assert proof == []
        else:
            assert proof == rfc_oracle.proof(size1, tree.entries)
            assert len(proof) == expected_consistency_length(size1, size)
            assert len(tree.reads) == 1
            assert sum(len(r) for r in tree.reads) <= 2 * size.bit_length() + 1
        verify_consistency(size1, size, root1, root2, proof)
        for bad in _mutations(proof):
            with pytest.raises(ProofError):
                verify_consistency(size1, size, root1, root2, bad)
        with pytest.raises(ProofError):
            verify_consistency(size1, size, _flip(root1), root2, proof)
        with pytest.raises(ProofError):
            verify_consistency(size1, size, root1, _flip(root2), proof)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100, 255, 256, 257, 300])
def test_compact_range_survives_a_store_round_trip(size: int) -> None:
    entries = _entries(size)
    whole = CompactRange()
    for e in entries[: size // 2]:
        whole.append(leaf_hash(e))
    # Persist as (size, hashes) and as (level, index, hash) rows, continue later.
    from_hashes = CompactRange(whole.size, list(whole.hashes))
    rows = [(n.level, n.index, h) for n, h in whole.nodes()]
    assert [(level, index) for level, index, _ in rows] == [
        (n.level, n.index) for n in range_nodes(0, whole.size)
    ]
    from_rows = CompactRange(whole.size, [h for _, _, h in rows])
    for state in (whole, from_hashes, from_rows):
        for e in entries[size // 2 :]:
            state.append(leaf_hash(e))
        assert state.root() == rfc_oracle.mth(entries)
    assert whole == from_hashes == from_rows


def test_compact_range_rejects_a_state_that_cannot_be() -> None:
    with pytest.raises(ProofError) as failure:
        CompactRange(5, [EMPTY_ROOT])  # 5 = 0b101 needs two hashes
    assert failure.value.reason == "compact-range-length"
    with pytest.raises(ProofError) as failure:
        CompactRange(1, [b"short"])
    assert failure.value.reason == "hash-length"
    with pytest.raises(ProofError):
        CompactRange().append(b"\x00" * 31)


def test_append_reports_each_perfect_node_with_its_rfc_hash() -> None:
    entries = _entries(77)
    state = CompactRange()
    for i, e in enumerate(entries):
        completed = state.append(leaf_hash(e))
        # leaf i completes one node per trailing 1-bit of i, plus the leaf itself
        assert [n.level for n, _ in completed] == list(range((~i & (i + 1)).bit_length()))
        for node, value in completed:
            assert value == rfc_oracle.mth(entries[node.begin : node.end])


def test_range_nodes_cover_exactly_and_minimally() -> None:
    rng = random.Random(17)
    for _ in range(500):
        a = rng.randrange(0, 300)
        b = rng.randrange(a, 301)
        nodes = range_nodes(a, b)
        covered = [i for n in nodes for i in range(n.begin, n.end)]
        assert covered == list(range(a, b))
        # minimal: no two neighbours could merge into their parent
        for left, right in zip(nodes, nodes[1:], strict=False):
            assert not (left.level == right.level and left.index % 2 == 0)


def test_range_completeness_proof() -> None:
    """EVIDENCE.md §1.7: compact range [0, a) + leaves [a, b) prove an export of [a, b)."""
    rng = random.Random(1_7)
    entries = _entries(300, seed=5)
    tree = Tree(entries)
    leaves = [leaf_hash(e) for e in entries]
    for _ in range(400):
        a = rng.randrange(0, 301)
        b = rng.randrange(a, 301)
        prefix = [tree.store[n] for n in range_nodes(0, a)]
        exported = leaves[a:b]
        verify_range(a, b, prefix, exported, tree.roots[a], tree.roots[b])
        if exported:
            dropped = exported[:-1] if rng.random() < 0.5 else exported[1:]
            with pytest.raises(ProofError):
                verify_range(a, b - 1, prefix, dropped, tree.roots[a], tree.roots[b])
            changed = list(exported)
            changed[rng.randrange(len(changed))] = _flip(changed[0], 3)
            with pytest.raises(ProofError):
                verify_range(a, b, prefix, changed, tree.roots[a], tree.roots[b])
            with pytest.raises(ProofError):  # one leaf more than the checkpoint covers
                verify_range(a, b, prefix, exported + [leaves[0]], tree.roots[a], tree.roots[b])
        if len(exported) > 1 and exported[0] != exported[1]:
            swapped = [exported[1], exported[0], *exported[2:]]
            with pytest.raises(ProofError):
                verify_range(a, b, prefix, swapped, tree.roots[a], tree.roots[b])
        if prefix:
            with pytest.raises(ProofError):
                verify_range(
                    a, b, [_flip(prefix[0]), *prefix[1:]], exported, tree.roots[a], tree.roots[b]
                )


# ---------------------------------------------------------------------------------------
# EVIDENCE.md §1.8 pitfalls, one test each


def test_pitfall_a_short_proof_does_not_pass_an_inner_node_off_as_the_root() -> None:
    """CT RFCs PR #100: without the final ``sn == 0`` test, the first k hashes of a proof
    lead to an inner node, and that node "verifies" as the root of the whole tree (with
    k = 0, a bare leaf verifies as the root of any tree)."""
    for size in range(2, 40):
        tree = Tree(_entries(size))
        for index in range(size):
            proof = inclusion_proof(index, size, tree.read)
            leaf = leaf_hash(tree.entries[index])
            inner_nodes = [(0, leaf)] + [
                (level, tree.store[NodeId(level, index >> level)])
                for level in range(1, size.bit_length())
                if NodeId(level, index >> level) in tree.store and (index >> level) << level < size
            ]
            for level, value in inner_nodes:
                if value == tree.roots[size]:
                    continue  # a perfect tree: its top node is the root
                with pytest.raises(ProofError) as failure:
                    verify_inclusion(leaf, index, size, proof[:level], value)
                assert failure.value.reason == "proof-length"


def test_pitfall_index_must_be_below_tree_size() -> None:
    """RFC 9162 §2.1.3.2 step 1 (CT RFCs PR #125)."""
    tree = Tree(_entries(4))
    proof = inclusion_proof(3, 4, tree.read)
    for index in (4, 5, 7, 2**63):
        with pytest.raises(ProofError) as failure:
            verify_inclusion(leaf_hash(tree.entries[3]), index, 4, proof, tree.roots[4])
        assert failure.value.reason in {"index-out-of-range", "proof-length"}
    with pytest.raises(ProofError) as failure:
        verify_inclusion(leaf_hash(tree.entries[3]), 4, 4, proof, tree.roots[4])
    assert failure.value.reason == "index-out-of-range"
    with pytest.raises(ProofError):
        inclusion_nodes(4, 4)


def test_pitfall_no_prover_chosen_directions_a_leaf_proves_only_its_index() -> None:
    """pymerkle <= 6.1 let the proof choose left/right; here the index alone decides."""
    for size in (2, 3, 7, 8, 13):
        tree = Tree(_entries(size))
        for index in range(size):
            proof = inclusion_proof(index, size, tree.read)
            leaf = leaf_hash(tree.entries[index])
            for other in range(size):
                if other != index and tree.entries[other] != tree.entries[index]:
                    with pytest.raises(ProofError):
                        verify_inclusion(leaf, other, size, proof, tree.roots[size])


def test_pitfall_indices_are_zero_based() -> None:
    """RFC / C2SP / transparency-dev are 0-based; pymerkle and proofgen's Go tables 1-based."""
    tree = Tree(_entries(8))
    for index in range(7):
        proof = inclusion_proof(index, 8, tree.read)
        verify_inclusion(leaf_hash(tree.entries[index]), index, 8, proof, tree.roots[8])
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(tree.entries[index]), index + 1, 8, proof, tree.roots[8])


def test_pitfall_unbounded_or_extra_proof_parts_fail_closed() -> None:
    """immudb GHSA-672p-m5jq-mrh8: every element used, exact length, nothing extra."""
    tree = Tree(_entries(10))
    proof = inclusion_proof(4, 10, tree.read)
    for extra in ([EMPTY_ROOT] * 70, [tree.roots[10]], proof):
        with pytest.raises(ProofError) as failure:
            verify_inclusion(leaf_hash(tree.entries[4]), 4, 10, proof + extra, tree.roots[10])
        assert failure.value.reason == "proof-length"


def test_pitfall_empty_tree_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex().startswith("e3b0c442")
    assert tree_root([]) == EMPTY_ROOT == CompactRange().root()


def test_pitfall_non_32_byte_hashes_are_rejected_before_hashing() -> None:
    tree = Tree(_entries(3))
    proof = inclusion_proof(0, 3, tree.read)
    leaf = leaf_hash(tree.entries[0])
    cases: list[Callable[[], None]] = [
        lambda: verify_inclusion(leaf[:31], 0, 3, proof, tree.roots[3]),
        lambda: verify_inclusion(leaf, 0, 3, proof, tree.roots[3] + b"\x00"),
        lambda: verify_inclusion(leaf, 0, 3, [proof[0][:16], proof[1]], tree.roots[3]),
        lambda: verify_consistency(1, 1, b"x" * 12, b"x" * 12, []),
        lambda: verify_consistency(
            1, 3, leaf, tree.roots[3] * 2, consistency_proof(1, 3, tree.read)
        ),
    ]
    for case in cases:
        with pytest.raises(ProofError) as failure:
            case()
        assert failure.value.reason == "hash-length"


def test_pitfall_size_zero_and_equal_size_semantics_are_written_down() -> None:
    """§1.5: size1 == 0 is an error (even 0 -> 0); equal sizes need an empty proof, equal roots."""
    tree = Tree(_entries(5))
    with pytest.raises(ProofError) as failure:
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert failure.value.reason == "empty-tree"
    with pytest.raises(ProofError) as failure:
        verify_consistency(0, 5, EMPTY_ROOT, tree.roots[5], [])
    assert failure.value.reason == "empty-tree"
    with pytest.raises(ProofError) as failure:
        verify_consistency(5, 4, tree.roots[5], tree.roots[4], [])
    assert failure.value.reason == "size-order"
    verify_consistency(5, 5, tree.roots[5], tree.roots[5], [])
    with pytest.raises(ProofError) as failure:
        verify_consistency(5, 5, tree.roots[5], tree.roots[4], [])
    assert failure.value.reason == "root-mismatch"
    with pytest.raises(ProofError) as failure:
        verify_consistency(5, 5, tree.roots[5], tree.roots[5], [tree.roots[5]])
    assert failure.value.reason == "proof-length"
    with pytest.raises(ProofError):
        consistency_nodes(0, 5)
    with pytest.raises(ProofError):
        consistency_nodes(6, 5)
    assert consistency_nodes(5, 5).nodes == []


def test_pitfall_a_rewritten_log_is_caught_only_by_consistency_with_an_earlier_head() -> None:
    """The operator rewrites leaf 3 and re-signs: self-consistent, but not with the old head."""
    honest = Tree(_entries(20))
    forged_entries = list(honest.entries)
    forged_entries[3] = b"rewritten"
    forged = Tree(forged_entries + _entries(5, seed=9))
    # the forged log verifies on its own
    proof = inclusion_proof(3, 25, forged.read)
    verify_inclusion(leaf_hash(b"rewritten"), 3, 25, proof, forged.roots[25])
    # but no proof the forger can produce links it to the head published at size 20
    with pytest.raises(ProofError) as failure:
        verify_consistency(
            20, 25, honest.roots[20], forged.roots[25], consistency_proof(20, 25, forged.read)
        )
    assert failure.value.reason == "root-mismatch"


def test_domain_separation_a_leaf_never_passes_for_an_interior_node() -> None:
    """§1.6: without the 0x00/0x01 prefixes the 64 bytes left||right would be a 'leaf'."""
    tree = Tree(_entries(4))
    left, right = tree.store[NodeId(1, 0)], tree.store[NodeId(1, 1)]
    assert leaf_hash(left + right) != node_hash(left, right)
    # presenting the level-1 node as leaf 0 of a 2-leaf tree does not verify
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(left), 0, 2, [right], tree.roots[4])


def test_expected_lengths_match_the_recursion() -> None:
    for n in range(1, 66):
        entries = [bytes([i % 256]) for i in range(n)]
        for m in range(n):
            assert expected_inclusion_length(m, n) == len(rfc_oracle.path(m, entries))
        for m in range(1, n):
            assert expected_consistency_length(m, n) == len(rfc_oracle.proof(m, entries))


def test_missing_stored_node_is_named() -> None:
    tree = Tree(_entries(6))
    with pytest.raises(ProofError) as failure:
        inclusion_proof(0, 6, lambda nodes: [tree.store[n] for n in nodes][:-1])
    assert failure.value.reason == "missing-nodes"
