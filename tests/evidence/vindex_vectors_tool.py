"""Writes tests/evidence/vectors/vindex/vindex-v1.json, the verifiable index's vectors
(docs/evidence-format.md §11): the map function over the wire contract's record vectors,
and maps with their roots and lookup proofs (empty map, one key with many leaves, keys
whose hashes share long prefixes, a small log).

The vectors are made by the code and checked by an independent transcription of the format
document (test_vindex_transcription.py). Regenerate only when the format changes:
``.venv/bin/python tests/evidence/vindex_vectors_tool.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocolo.evidence.vindex import EMPTY, IndexMap, MapKey, map_keys
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import HEADER_SIZE, DecodeError, read_body, split

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "evidence" / "vectors" / "vindex" / "vindex-v1.json"


def decoded_or_none(catalogue: SchemaCatalogue, value: bytes) -> Any:
    """The value decoded with its writer schema (§11.1), or None."""
    try:
        fp, _ = split(value)
        version = catalogue.by_fingerprint(fp)
        return read_body(value, version.schema, None, start=HEADER_SIZE)
    except DecodeError:
        return None


def _keys_json(keys: list[MapKey]) -> list[dict[str, str]]:
    return [{"kind": k.kind, "value": k.value, "key_hash_hex": k.hash.hex()} for k in keys]


def map_function_cases(catalogue: SchemaCatalogue) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((REPO / "schemas" / "vectors").glob("*.v*.json")):
        vector = json.loads(path.read_text())
        key = vector["kafka_key"].encode()
        value = bytes.fromhex(vector["single_object_hex"])
        keys = map_keys(key, decoded_or_none(catalogue, value))
        cases.append({"name": path.name, "kafka_key_hex": key.hex(), "value_hex": value.hex(),
                      "schema_file": vector["schema_file"], "keys": _keys_json(keys)})
    extra = [("null key, value not Avro", None, b"not avro"),
             ("key not UTF-8", b"\xff\xfe", b""),
             ("other UTF-8 key", "chave-é".encode(), b"\xc3\x01" + bytes(8)),
             ("uppercase UUID is not an id", b"0E984725-C51C-4BF4-9960-E1C80E27ABA0", b"")]
    for name, key_bytes, value in extra:
        keys = map_keys(key_bytes, decoded_or_none(catalogue, value))
        cases.append({"name": name, "kafka_key_hex": None if key_bytes is None else key_bytes.hex(),
                      "value_hex": value.hex(), "schema_file": None, "keys": _keys_json(keys)})
    return cases


def _shared_prefix_keys(count: int) -> list[tuple[int, MapKey, MapKey]]:
    """Pairs of protocol keys whose hashes share the longest prefixes among 2^16 keys."""
    keys = sorted((MapKey("protocol", f"2026{n:011d}"), ) for n in range(1 << 16))
    hashed = sorted((int.from_bytes(k[0].hash, "big"), k[0]) for k in keys)
    pairs = []
    for (a, ka), (b, kb) in zip(hashed, hashed[1:], strict=False):
        pairs.append((256 - (a ^ b).bit_length(), ka, kb))
    pairs.sort(key=lambda p: -p[0])
    return pairs[:count]


def _nearest(key: MapKey, exclude: set[MapKey]) -> MapKey:
    """The key among 2^16 others whose hash shares the longest prefix with ``key``'s."""
    target = int.from_bytes(key.hash, "big")
    candidates = (MapKey("protocol", f"2027{n:011d}") for n in range(1 << 16))
    return max((k for k in candidates if k not in exclude),
               key=lambda k: 256 - (int.from_bytes(k.hash, "big") ^ target).bit_length())


def _map_case(name: str, leaves: list[list[MapKey]], lookups: list[MapKey]) -> dict[str, Any]:
    index = IndexMap()
    for i, keys in enumerate(leaves):
        index.add_leaf(i, keys)
    root = index.commit()
    entries = [{"kind": index.keys[k].kind, "value": index.keys[k].value,
                "indexes": index.lists[k]} for k in sorted(index.lists)]
    return {"name": name, "size": index.size, "entries": entries, "root_hex": root.hex(),
            "lookups": [index.prove(k).to_json() for k in lookups]}


def map_cases() -> list[dict[str, Any]]:
    customer = MapKey("cpf-index", "0248ba1d538749e3ea755e1b96b3da545bfdfa40dddfdee5b65c3029287cf2ae")
    contact = MapKey("protocol", "202600000123457")
    absent = MapKey("protocol", "202600000000001")
    many = [[contact] for _ in range(300)]
    pairs = _shared_prefix_keys(4)
    (bits, a, b), (_, c, d), (_, e, f) = pairs[0], pairs[1], pairs[2]
    prefix_leaves = [[a], [b], [c], [a, customer], [d], [b], [e]]
    small = [[contact, customer], [contact], [MapKey("id", "0e984725-c51c-4bf4-9960-e1c80e27aba0"),
             customer], [MapKey("protocol", "202600000123468")], [contact], [],
             [MapKey("subject", customer.value)]]
    return [
        _map_case("empty map", [], [contact]),
        _map_case("empty leaves only", [[], []], [contact]),
        _map_case("one key with many leaves", many, [contact, absent]),
        _map_case(f"keys sharing long prefixes ({bits} bits)", prefix_leaves,
                  [a, b, c, d, customer, e, f, absent,
                   _nearest(a, {a, b})]),
        _map_case("a small log", small, [contact, customer, absent,
                                         MapKey("subject", customer.value)]),
    ]


def main() -> None:
    catalogue = SchemaCatalogue.load()
    document = {
        "format": "protocolo-vindex/v1",
        "doc": "docs/evidence-format.md section 11; made by tests/evidence/vindex_vectors_tool.py",
        "empty_hex": EMPTY.hex(),
        "map_function": map_function_cases(catalogue),
        "maps": map_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
