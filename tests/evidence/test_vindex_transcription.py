"""The verifiable index's committed vectors checked by the independent transcription of
docs/evidence-format.md §11 (tests/evidence/vindex_oracle.py): the map function from the
record bytes (plain fastavro), the roots recomputed from the entries, every lookup proof
verified, and every proof refused once altered."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import vindex_oracle as oracle

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests/evidence/vectors/vindex/vindex-v1.json").read_text())
SCHEMAS = oracle.published_schemas(REPO / "schemas" / "avro")


@pytest.mark.parametrize("case", VECTORS["map_function"], ids=lambda c: c["name"])
def test_map_function_vectors(case: dict[str, Any]) -> None:
    key = None if case["kafka_key_hex"] is None else bytes.fromhex(case["kafka_key_hex"])
    pairs = oracle.leaf_pairs(key, bytes.fromhex(case["value_hex"]), SCHEMAS)
    assert sorted(pairs) == [(k["kind"], k["value"]) for k in case["keys"]]
    for k in case["keys"]:
        assert oracle.key_hash(k["kind"], k["value"]).hex() == k["key_hash_hex"]


def test_map_function_vectors_cover_every_kind() -> None:
    kinds = {k["kind"] for case in VECTORS["map_function"] for k in case["keys"]}
    assert kinds == {"protocol", "id", "subject", "key", "key-hex", "cpf-index",
                     "customer-code-index"}


@pytest.mark.parametrize("case", VECTORS["maps"], ids=lambda c: c["name"])
def test_map_vectors(case: dict[str, Any]) -> None:
    entries = {oracle.key_hash(e["kind"], e["value"]): e["indexes"] for e in case["entries"]}
    root = oracle.root(entries)
    assert root.hex() == case["root_hex"]
    if not entries:
        assert root == oracle.ZERO
    for proof in case["lookups"]:
        k = oracle.key_hash(proof["kind"], proof["value"])
        assert oracle.verify(proof, root, case["size"]) == entries.get(k)


def _mutations(proof: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, change in [
        # another key's absence may well be true; another key's presence never is
        ("other key", lambda p: p.update(value=p["value"] + "0") if p["indexes"] else None),
        ("other size", lambda p: p.update(size=p["size"] + 1)),
        ("a leaf left out", lambda p: p.update(indexes=p["indexes"][:-1] or None)
         if p["indexes"] else p.update(indexes=[0])),
        ("a leaf added", lambda p: p.update(indexes=sorted(set(p["indexes"]) | {p["size"] - 1})
                                            if p["indexes"] and p["size"] - 1 not in p["indexes"]
                                            else [0, 1])),
        ("a sibling dropped", lambda p: p.update(siblings=p["siblings"][1:])
         if p["siblings"] else p.update(siblings=[oracle.base64.b64encode(b"\x01" * 32).decode()])),
    ]:
        mutated = copy.deepcopy(proof)
        change(mutated)
        if mutated != proof:
            out.append((name, mutated))
    return out


@pytest.mark.parametrize("case", VECTORS["maps"], ids=lambda c: c["name"])
def test_altered_proofs_are_refused(case: dict[str, Any]) -> None:
    root = bytes.fromhex(case["root_hex"])
    refused = 0
    for proof in case["lookups"]:
        for name, mutated in _mutations(proof):
            with pytest.raises(ValueError):
                oracle.verify(mutated, root, case["size"])
                pytest.fail(f"{name} accepted")
            refused += 1
    assert refused >= len(case["lookups"]) * 3
