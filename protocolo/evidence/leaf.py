"""The bytes of a ledger record's Merkle leaf (layout v1), for the ledger and the verifier.

A leaf binds a record to its place in the log: topic, partition and offset, then key and
value exactly as the broker returned them (headers are not covered). Every field is
length-prefixed so no two records share an encoding; integers are big-endian::

    u16 len(topic) | topic (UTF-8) | u32 partition | u64 offset
    | i32 len(key), or -1 for a null key | key | u32 len(value) | value

``leaf hash = SHA-256(0x00 || leaf input)`` (RFC 6962). This is the layout of
``protocolo.projections.integrity`` (the projector's), restated here because the offline
verifier may not import the projector; a test keeps the two identical.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from protocolo.evidence.errors import ProofError
from protocolo.evidence.merkle import LEAF_PREFIX, leaf_hash


def record_leaf_input(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes
) -> bytes:
    name = topic.encode("utf-8")
    if not name or len(name) > 0xFFFF:
        raise ProofError("bad-record", f"topic must be 1..65535 bytes, got {len(name)}")
    if not 0 <= partition <= 0xFFFFFFFF:
        raise ProofError("bad-record", f"partition {partition} is not a u32")
    if not 0 <= offset <= 0xFFFFFFFFFFFFFFFF:
        raise ProofError("bad-record", f"offset {offset} is not a u64")
    if key is not None and len(key) > 0x7FFFFFFF:
        raise ProofError("bad-record", "key longer than 2^31-1 bytes")
    if len(value) > 0xFFFFFFFF:
        raise ProofError("bad-record", "value longer than 2^32-1 bytes")
    parts = [struct.pack(">H", len(name)), name, struct.pack(">IQ", partition, offset)]
    if key is None:
        parts.append(struct.pack(">i", -1))
    else:
        parts += [struct.pack(">i", len(key)), key]
    parts += [struct.pack(">I", len(value)), value]
    return b"".join(parts)


def record_leaf_hash(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes
) -> bytes:
    return leaf_hash(record_leaf_input(topic, partition, offset, key, value))


def partition_leaf_hasher(
    topic: str, partition: int
) -> Callable[[int, bytes | None, bytes], bytes]:
    """:func:`record_leaf_hash` for the records of one topic partition: ``leaf(offset, key,
    value)``, the constant prefix (leaf prefix, topic, partition) encoded once. A verifier
    recomputing millions of leaves spends its time here; the bytes hashed are the same and
    a field out of range raises the same :class:`ProofError`."""
    prefix = LEAF_PREFIX + record_leaf_input(topic, partition, 0, None, b"")[:-16]
    pack_offset, pack_key_length, pack_value_length = (
        struct.Struct(">Q").pack, struct.Struct(">i").pack, struct.Struct(">I").pack)
    null_key = pack_key_length(-1)
    sha256 = hashlib.sha256

    def leaf(offset: int, key: bytes | None, value: bytes) -> bytes:
        try:
            head = prefix + pack_offset(offset)
            if key is None:
                return sha256(b"".join((head, null_key, pack_value_length(len(value)), value))).digest()
            return sha256(b"".join((head, pack_key_length(len(key)), key, pack_value_length(len(value)),
                                    value))).digest()
        except struct.error:
            return record_leaf_hash(topic, partition, offset, key, value)  # raises the ProofError

    return leaf
