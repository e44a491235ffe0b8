"""Verifying Merkle proofs: RFC 9162 inclusion and consistency, and export completeness.

The two RFC verifiers are literal transcriptions of RFC 9162 §2.1.3.2 and §2.1.4.2 (read
from draft-ietf-trans-rfc6962-bis-42), with the cases the RFC leaves open defined as
transparency-dev/merkle ``proof/verify.go`` defines them (and its public vectors check):

* ``size1 == 0`` is an error, even towards size 0 ("consistency proof from the empty tree
  is meaningless");
* ``size1 > size2`` is an error;
* ``size1 == size2`` needs an empty proof and equal roots.

Before running the algorithm every hash is checked to be 32 bytes and the proof to have
exactly the length the tree shape implies (so garbage before, after or inside a valid proof
is named as such); the RFC's own ``sn == 0`` tests stay in place as a second line. Failures
raise :class:`~protocolo.evidence.errors.ProofError` with a stable ``reason``.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocolo.evidence.errors import ProofError
from protocolo.evidence.merkle import (
    CompactRange,
    expected_consistency_length,
    expected_inclusion_length,
    fold,
    node_hash,
    require_hash,
    require_size,
)


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        require_hash(f"proof hash {position}", value)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash ``leaf`` is entry ``index`` (0-based) of the tree ``root``.

    Raises :class:`ProofError` unless the proof verifies; returns nothing.
    """
    require_size("index", index)
    require_size("size", size)
    require_hash("leaf hash", leaf)
    require_hash("root", root)
    _check_proof_hashes(proof)
    # RFC 9162 §2.1.3.2 step 1.
    if index >= size:
        raise ProofError(
            "index-out-of-range", f"leaf index {index} is not in a tree of size {size}"
        )
    want = expected_inclusion_length(index, size)
    if len(proof) != want:
        raise ProofError(
            "proof-length",
            f"inclusion proof of index {index} in a tree of size {size} has {want} hashes, "
            f"got {len(proof)}",
        )
    # Steps 2-5.
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("proof-length", "inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof-length", "inclusion proof is shorter than the tree is high")
    if r != root:
        raise ProofError(
            "root-mismatch",
            f"inclusion proof of index {index} does not lead to the root of size {size}",
        )


def _outside_the_rfc_precondition(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """The cases RFC 9162 leaves out (its algorithm needs ``0 < size1 < size2``), as
    transparency-dev/merkle defines them: True when equal sizes verified, raise when refused,
    False when the RFC algorithm must decide."""
    if size1 > size2:
        raise ProofError("size-order", f"first size {size1} is larger than second size {size2}")
    if size1 == 0:
        raise ProofError("empty-tree", "a consistency proof from the empty tree is meaningless")
    if size1 != size2:
        return False
    if proof:
        raise ProofError(
            "proof-length", f"trees of equal size {size1} need an empty proof, got {len(proof)}"
        )
    if root1 != root2:
        raise ProofError("root-mismatch", f"two different roots for the same size {size1}")
    return True


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``root2`` of ``size2`` leaves extends the tree ``root1`` of ``size1``.

    Raises :class:`ProofError` unless the proof verifies; returns nothing.
    """
    require_size("size1", size1)
    require_size("size2", size2)
    require_hash("first root", root1)
    require_hash("second root", root2)
    _check_proof_hashes(proof)
    if _outside_the_rfc_precondition(size1, size2, root1, root2, proof):
        return
    want = expected_consistency_length(size1, size2)
    if len(proof) != want:
        raise ProofError(
            "proof-length",
            f"consistency proof from {size1} to {size2} has {want} hashes, got {len(proof)}",
        )
    # RFC 9162 §2.1.4.2, steps 1-7.
    path = list(proof)
    if not path:
        raise ProofError("proof-length", "consistency proof is empty")
    if size1 & (size1 - 1) == 0:
        path = [bytes(root1), *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof-length", "consistency proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof-length", "consistency proof is shorter than the tree is high")
    if fr != root1:
        raise ProofError(
            "root-mismatch", f"consistency proof does not lead to the root of size {size1}"
        )
    if sr != root2:
        raise ProofError(
            "root-mismatch", f"consistency proof does not lead to the root of size {size2}"
        )


def verify_range(
    begin: int,
    end: int,
    prefix: Sequence[bytes],
    leaves: Sequence[bytes],
    root_begin: bytes,
    root_end: bytes,
) -> None:
    """Completeness of an export: ``leaves`` are exactly entries ``[begin, end)``, in order.

    ``prefix`` is the compact range of ``[0, begin)`` (one hash per set bit of ``begin``,
    largest subtree first); it must fold to ``root_begin``. Appending the leaf hashes to it
    must give ``root_end``. With ``root_begin`` and ``root_end`` taken from two signed
    checkpoints, nothing can have been added, dropped or reordered (EVIDENCE.md §1.7).
    """
    require_size("begin", begin)
    require_size("end", end)
    require_hash("root at begin", root_begin)
    require_hash("root at end", root_end)
    if begin > end:
        raise ProofError("size-order", f"range [{begin}, {end}) has begin > end")
    if len(leaves) != end - begin:
        raise ProofError(
            "range-length", f"range [{begin}, {end}) has {end - begin} leaves, got {len(leaves)}"
        )
    state = CompactRange(begin, prefix)
    if fold(state.hashes) != root_begin:
        raise ProofError(
            "root-mismatch",
            f"the compact range of [0, {begin}) does not give the root of size {begin}",
        )
    for position, leaf in enumerate(leaves):
        require_hash(f"leaf hash {begin + position}", leaf)
        state.append(leaf)
    if state.root() != root_end:
        raise ProofError(
            "root-mismatch",
            f"leaves [{begin}, {end}) appended to the tree of size {begin} do not give the root of size {end}",
        )
