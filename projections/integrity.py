"""Integrity fields of journal rows: RFC 6962 Merkle leaves, one tree per partition.

The leaf input binds a record to its place in the log: topic, partition and offset, then
key and value exactly as the broker returned them (headers are a convenience and are not
covered). Each field is length-prefixed so no two records share an encoding::

    u16 len(topic) | topic | u32 partition | u64 offset | i32 len(key) or -1 | key
    | u32 len(value) | value                                  (big-endian integers)

``leaf_hash = SHA-256(0x00 || leaf_input)`` as in RFC 6962 §2.1. Interior nodes (0x01
prefix), signed tree heads and proofs are to be built on these hashes; they do not exist yet.
"""

from __future__ import annotations

import hashlib
import struct

LEAF_PREFIX = b"\x00"


def leaf_input(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    t = topic.encode()
    parts = [struct.pack(">H", len(t)), t, struct.pack(">IQ", partition, offset)]
    if key is None:
        parts.append(struct.pack(">i", -1))
    else:
        parts += [struct.pack(">i", len(key)), key]
    parts += [struct.pack(">I", len(value)), value]
    return b"".join(parts)


def leaf_hash(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf_input(topic, partition, offset, key, value)).digest()

