"""The verifiable index's code (protocolo.evidence.vindex) against the independent
transcription of its format (vindex_oracle): random maps grown leaf by leaf, roots and
proofs compared at every step, and each kind of altered proof refused with its reason."""

from __future__ import annotations

import dataclasses
import random

import pytest
import vindex_oracle as oracle

from protocolo.evidence.vindex import (
    EMPTY,
    IndexMap,
    IndexProofError,
    LookupProof,
    MapKey,
    MapTree,
    list_hash,
    prove,
    verify_lookup,
    verify_path,
)


def _grow(seed: int, leaves: int, keys: int) -> tuple[IndexMap, list[MapKey], dict[bytes, list[int]]]:
    rng = random.Random(seed)
    pool = [MapKey("protocol", f"2026{n:011d}") for n in range(keys)]
    index = IndexMap()
    expected: dict[bytes, list[int]] = {}
    for i in range(leaves):
        chosen = {rng.choice(pool) for _ in range(rng.randint(0, 3))}
        index.add_leaf(i, chosen)
        for key in chosen:
            expected.setdefault(oracle.key_hash(key.kind, key.value), []).append(i)
        if rng.random() < 0.1:  # commit at irregular points, as checkpoints do
            assert index.commit() == oracle.root(expected)
    return index, pool, expected


@pytest.mark.parametrize("seed", range(6))
def test_incremental_map_matches_the_transcription(seed: int) -> None:
    index, pool, expected = _grow(seed, leaves=400, keys=[1, 2, 5, 40, 300, 1000][seed])
    root = index.commit()
    assert root == oracle.root(expected)
    for key in pool[:60] + [MapKey("cpf-index", "00" * 32)]:
        proof = index.prove(key).to_json()
        assert oracle.verify(proof, root, index.size) == expected.get(key.hash)
        assert verify_lookup(LookupProof.from_json(proof), root, index.size, key) == (
            None if key.hash not in expected else tuple(expected[key.hash]))


def test_empty_map() -> None:
    index = IndexMap()
    assert index.commit() == EMPTY == oracle.root({})
    proof = index.prove(MapKey("protocol", "202600000000001"))
    assert proof.indexes is None and proof.siblings == () and proof.other_leaf is None
    assert verify_lookup(proof, EMPTY, 0) is None


def test_keys_sharing_long_prefixes() -> None:
    """Chosen key hashes sharing 200 and 255 bits: paths that deep, checked at the tree level."""
    base = random.Random(7).getrandbits(256)
    hashes = [base, base ^ 1, base ^ (1 << 55), base ^ (1 << 255)]
    lists = {k.to_bytes(32, "big"): [i, i + 10] for i, k in enumerate(hashes)}
    tree = MapTree()
    tree.update({k: list_hash(v) for k, v in lists.items()})
    assert tree.root() == oracle.root(lists)
    for khash, indexes in lists.items():
        proof = prove(tree, MapKey("raw", ""), 20, lambda k: lists[k])
        siblings, node = tree.path(khash)
        proof = dataclasses.replace(proof, indexes=tuple(indexes), siblings=tuple(siblings),
                                    other_leaf=None)
        assert node is not None and node.leaf_key == khash
        assert verify_path(proof, khash, tree.root(), 20) == tuple(indexes)
    assert len(tree.path((base ^ 1).to_bytes(32, "big"))[0]) == 256


def _refused(proof: LookupProof, root: bytes, size: int, key: MapKey | None = None) -> str:
    with pytest.raises(IndexProofError) as caught:
        verify_lookup(proof, root, size, key)
    return caught.value.reason


def test_altered_proofs_are_refused_with_their_reason() -> None:
    index, pool, expected = _grow(3, leaves=300, keys=40)
    root, size = index.commit(), index.size
    present = next(k for k in pool if k.hash in expected)
    proof = index.prove(present)
    assert proof.indexes is not None
    assert _refused(proof, root, size, pool[-1] if pool[-1] != present else pool[0]) == "other-key"
    assert _refused(proof, root, size + 1) == "other-checkpoint"
    assert _refused(dataclasses.replace(proof, indexes=proof.indexes[:-1] or None), root,
                    size) in ("root-mismatch",)
    assert _refused(dataclasses.replace(proof, indexes=proof.indexes + (size - 1,)
                                        if proof.indexes[-1] != size - 1 else (0,)),
                    root, size) in ("root-mismatch", "list-order")
    assert _refused(dataclasses.replace(proof, indexes=tuple(reversed(proof.indexes))),
                    root, size) in ("list-order", "root-mismatch")
    assert _refused(dataclasses.replace(proof, indexes=()), root, size) == "empty-list"
    assert _refused(dataclasses.replace(proof, indexes=(size,)), root, size) == "index-out-of-range"
    assert _refused(dataclasses.replace(proof, siblings=proof.siblings[1:]), root,
                    size) in ("root-mismatch", "non-canonical")
    assert _refused(dataclasses.replace(proof, siblings=proof.siblings[:-1] + (EMPTY,)), root,
                    size) == "non-canonical"
    assert _refused(dataclasses.replace(proof, siblings=(b"\x00" * 31,)), root,
                    size) == "hash-length"
    absent = index.prove(MapKey("protocol", "209900000000000"))
    assert absent.indexes is None
    if absent.other_leaf is not None:
        assert _refused(dataclasses.replace(absent, other_leaf=(present.hash, list_hash(
            proof.indexes))), root, size) in ("other-leaf-off-path", "root-mismatch")
    # a proof of presence turned into one of absence cannot verify
    assert _refused(dataclasses.replace(proof, indexes=None), root, size) in (
        "root-mismatch", "non-canonical")


def test_malformed_json_is_named() -> None:
    for data in [None, {}, {"format": "protocolo-vindex-lookup/v1"},
                 {"format": "protocolo-vindex-lookup/v1", "kind": "protocol", "value": "1",
                  "size": True, "indexes": None, "siblings": []},
                 {"format": "protocolo-vindex-lookup/v1", "kind": "protocol", "value": "1",
                  "size": 1, "indexes": ["0"], "siblings": []},
                 {"format": "protocolo-vindex-lookup/v1", "kind": "protocol", "value": "1",
                  "size": 1, "indexes": None, "siblings": ["!!"]}]:
        with pytest.raises(IndexProofError) as caught:
            LookupProof.from_json(data)
        assert caught.value.reason in ("malformed-lookup-proof", "bad-base64")
