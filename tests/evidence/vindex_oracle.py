"""An independent transcription of docs/evidence-format.md §11 (the verifiable index),
written from the document, never importing protocolo: the oracle the index's tests compare
the code with. Plain hashlib, re and fastavro."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

ZERO = b"\x00" * 32


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def kafka_key_pair(key: bytes | None) -> tuple[str, str] | None:
    if key is None:
        return None
    if re.fullmatch(rb"[0-9]{15}", key):
        return ("protocol", key.decode())
    if re.fullmatch(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", key):
        return ("id", key.decode())
    if re.fullmatch(rb"[0-9a-f]{64}", key):
        return ("subject", key.decode())
    try:
        return ("key", key.decode("utf-8"))
    except UnicodeDecodeError:
        return ("key-hex", key.hex())


def published_schemas(root: Path) -> dict[bytes, Any]:
    """fingerprint (8 bytes, little-endian as on the wire) -> parsed writer schema."""
    found = {}
    for path in root.glob("*/v*.avsc"):
        raw = json.loads(path.read_text())
        # fastavro prints the CRC-64-AVRO fingerprint in wire order already
        found[bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))] = \
            parse_schema(raw)
    return found


def decode(value: bytes, schemas: dict[bytes, Any]) -> Any | None:
    if len(value) < 10 or value[:2] != b"\xc3\x01" or value[2:10] not in schemas:
        return None
    stream = io.BytesIO(value[10:])
    try:
        record = fastavro.schemaless_reader(stream, schemas[value[2:10]], None)
    except Exception:
        return None
    return record if stream.tell() == len(value) - 10 else None


def blind_pairs(item: Any) -> set[tuple[str, str]]:
    kinds = {"cpf_index": "cpf-index", "customer_code_index": "customer-code-index"}
    out: set[tuple[str, str]] = set()
    if isinstance(item, dict):
        for name, value in item.items():
            if name in kinds and isinstance(value, str):
                out.add((kinds[name], value))
            else:
                out |= blind_pairs(value)
    elif isinstance(item, list | tuple):
        for value in item:
            out |= blind_pairs(value)
    return out


def leaf_pairs(key: bytes | None, value: bytes, schemas: dict[bytes, Any]) -> set[tuple[str, str]]:
    record = decode(value, schemas)
    pairs = blind_pairs(record) if record is not None else set()
    own = kafka_key_pair(key)
    if own is not None:
        pairs.add(own)
    return pairs


def key_hash(kind: str, value: str) -> bytes:
    return h((kind + ":" + value).encode("utf-8"))


def list_hash(indexes: list[int]) -> bytes:
    return h(b"".join(i.to_bytes(8, "big") for i in indexes))


def map_leaf(k: bytes, indexes: list[int]) -> bytes:
    return h(b"\x10" + k + list_hash(indexes))


def bit(k: bytes, j: int) -> int:
    return (k[j // 8] >> (7 - j % 8)) & 1


def node(depth: int, entries: list[tuple[bytes, list[int]]]) -> bytes:
    if not entries:
        return ZERO
    if len(entries) == 1:
        return map_leaf(*entries[0])
    left = [e for e in entries if bit(e[0], depth) == 0]
    right = [e for e in entries if bit(e[0], depth) == 1]
    return h(b"\x11" + node(depth + 1, left) + node(depth + 1, right))


def root(entries: dict[bytes, list[int]]) -> bytes:
    return node(0, list(entries.items()))


def verify(proof: dict[str, Any], map_root: bytes, n: int) -> list[int] | None:
    """Steps 1-4 of §11.4; raises ValueError naming the failed rule."""
    if proof.get("format") != "protocolo-vindex-lookup/v1":
        raise ValueError("format")
    if proof["size"] != n:
        raise ValueError("other-checkpoint")
    k = key_hash(proof["kind"], proof["value"])
    siblings = [base64.b64decode(s, validate=True) for s in proof["siblings"]]
    if any(len(s) != 32 for s in siblings) or len(map_root) != 32:
        raise ValueError("hash-length")
    if len(siblings) > 256:
        raise ValueError("proof-length")
    d = len(siblings)
    indexes = proof["indexes"]
    if indexes is not None:
        if proof["other_leaf"] is not None or not indexes:
            raise ValueError("list")
        if any(b <= a for a, b in zip(indexes, indexes[1:], strict=False)) or indexes[0] < 0 or indexes[-1] >= n:
            raise ValueError("list")
        t = map_leaf(k, indexes)
    elif proof["other_leaf"] is None:
        t = ZERO
    else:
        other = base64.b64decode(proof["other_leaf"]["key_hash"], validate=True)
        other_list = base64.b64decode(proof["other_leaf"]["list_hash"], validate=True)
        if len(other) != 32 or len(other_list) != 32 or other == k or any(
                bit(other, j) != bit(k, j) for j in range(d)):
            raise ValueError("other-leaf-off-path")
        t = h(b"\x10" + other + other_list)
    if d and siblings[d - 1] == ZERO:
        raise ValueError("non-canonical")
    for j in range(d - 1, -1, -1):
        t = h(b"\x11" + siblings[j] + t) if bit(k, j) else h(b"\x11" + t + siblings[j])
    if t != map_root:
        raise ValueError("root-mismatch")
    return indexes
