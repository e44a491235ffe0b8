"""Leaf layout v1: spelled out byte by byte, and identical to the projector's."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from protocolo.evidence.errors import ProofError
from protocolo.evidence.leaf import record_leaf_hash, record_leaf_input
from protocolo.projections import integrity


def test_layout_byte_by_byte() -> None:
    got = record_leaf_input("ledger", 3, 258, b"k1", b"value")
    expected = (
        b"\x00\x06"
        + b"ledger"
        + b"\x00\x00\x00\x03"
        + b"\x00\x00\x00\x00\x00\x00\x01\x02"
        + b"\x00\x00\x00\x02"
        + b"k1"
        + b"\x00\x00\x00\x05"
        + b"value"
    )
    assert got == expected
    assert (
        record_leaf_hash("ledger", 3, 258, b"k1", b"value")
        == hashlib.sha256(b"\x00" + expected).digest()
    )


def test_null_key_and_empty_key_differ() -> None:
    null = record_leaf_input("t", 0, 0, None, b"")
    empty = record_leaf_input("t", 0, 0, b"", b"")
    assert null == b"\x00\x01t" + bytes(12) + b"\xff\xff\xff\xff" + bytes(4)
    assert empty == b"\x00\x01t" + bytes(12) + bytes(4) + bytes(4)


@pytest.mark.parametrize(
    "record",
    [
        ("protocolo.ledger", 0, 0, None, b""),
        ("protocolo.ledger", 7, 2**40 + 5, b"", b"\x00" * 300),
        ("t\u00e9pico", 2**32 - 1, 2**63 - 1, b"key", b"Obj\x01avro"),
    ],
)
def test_same_bytes_as_the_projector(record: tuple[Any, ...]) -> None:
    assert record_leaf_input(*record) == integrity.leaf_input(*record)
    assert record_leaf_hash(*record) == integrity.leaf_hash(*record)


@pytest.mark.parametrize(
    "record",
    [
        ("", 0, 0, None, b""),
        ("t", -1, 0, None, b""),
        ("t", 2**32, 0, None, b""),
        ("t", 0, -1, None, b""),
    ],
)
def test_out_of_range_fields_are_refused(record: tuple[Any, ...]) -> None:
    with pytest.raises(ProofError) as failure:
        record_leaf_input(*record)
    assert failure.value.reason == "bad-record"
