"""The projector's own record-batch reader against batches kafka-python's writer builds
(an independent implementation of the same format), plain and compressed, with a header
key that is not UTF-8 kept as bytes."""

from __future__ import annotations

import struct

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from protocolo.consumers.raw_records import RecordBatchError, read_batches


class NotUtf8(str):
    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        return b"\xff\xfe"


def batch(base: int, codec: int, records: list[tuple[bytes | None, bytes | None, list]]) -> bytes:  # type: ignore[type-arg]
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the broker assigns the base offset
    return bytes(data)


@pytest.mark.parametrize("codec", [0, 1], ids=["uncompressed", "gzip"])
def test_records_and_header_bytes_are_read_as_written(codec: int) -> None:
    written = [(b"k0", b"v0", []), (None, b"v1", [(NotUtf8("x"), b"hv"), ("ok", None)]), (b"k2", None, [])]
    data = batch(40, codec, written) + batch(43, codec, [(b"k3", b"v3", [])])
    records = list(read_batches(data, partition=3))
    assert [(r.partition, r.offset, r.key, r.value) for r in records] == [
        (3, 40, b"k0", b"v0"), (3, 41, None, b"v1"), (3, 42, b"k2", None), (3, 43, b"k3", b"v3")]
    assert records[1].headers == [(b"\xff\xfe", b"hv"), (b"ok", None)]
    assert [r.header_keys_are_text() for r in records] == [True, False, True, True]
    assert [r.batch_end for r in records] == [43, 43, 43, 44]
    assert records[2].timestamp == 1_700_000_000_002


def test_a_partial_batch_at_the_end_is_left_and_a_corrupt_one_refused() -> None:
    whole = batch(0, 0, [(b"k", b"v", [])])
    assert [r.offset for r in read_batches(whole + whole[:20], 0)] == [0]
    corrupt = bytearray(whole)
    corrupt[-1] ^= 0xFF
    with pytest.raises(RecordBatchError, match="CRC-32C"):
        list(read_batches(bytes(corrupt), 0))
