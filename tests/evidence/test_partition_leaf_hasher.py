"""The verifier's fast leaf hasher hashes exactly the bytes of the leaf layout v1.

Oracle: the layout transcribed from docs/evidence-format.md §1 here, not the code under test.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from protocolo.evidence.errors import ProofError
from protocolo.evidence.leaf import partition_leaf_hasher, record_leaf_hash


def spec_leaf(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    t = topic.encode()
    body = struct.pack(">H", len(t)) + t + struct.pack(">IQ", partition, offset)
    body += struct.pack(">i", -1) if key is None else struct.pack(">i", len(key)) + key
    return hashlib.sha256(b"\x00" + body + struct.pack(">I", len(value)) + value).digest()


CASES = [
    ("ledger", 3, 258, b"k1", b"value"),
    ("ledger", 0, 0, None, b""),
    ("ledger", 0, 0, b"", b""),
    ("protocolo.interactions", 2**32 - 1, 2**64 - 1, b"\xff" * 300, bytes(range(256)) * 40),
    ("t\u00e9pico", 7, 12345678901, None, b"\x00\x01"),
]


@pytest.mark.parametrize(("topic", "partition", "offset", "key", "value"), CASES)
def test_the_partition_hasher_is_the_leaf_of_layout_v1(topic, partition, offset, key, value) -> None:
    leaf = partition_leaf_hasher(topic, partition)(offset, key, value)
    assert leaf == spec_leaf(topic, partition, offset, key, value)
    assert leaf == record_leaf_hash(topic, partition, offset, key, value)


@pytest.mark.parametrize("offset", [-1, 2**64])
def test_an_offset_out_of_range_is_refused_as_by_the_layout(offset) -> None:
    with pytest.raises(ProofError) as refused:
        partition_leaf_hasher("ledger", 0)(offset, None, b"")
    assert refused.value.reason == "bad-record"
