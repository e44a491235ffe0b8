"""Kafka record batches (message format v2) read from their bytes, headers kept as bytes.

kafka-python decodes every header key as strict UTF-8 while it parses a fetch, so a
record whose header key is not UTF-8 (other clients can write one: the protocol says
"string" but brokers do not check) makes its consumer raise on every poll and never
return the records after it. The projector then reads the stuck partition's batches with
this parser, which keeps header keys as the bytes they are, so that the record can be
quarantined with its raw bytes like any other unreadable record and projection goes on.

Layout transcribed from the Kafka protocol guide ("Record Batch", "Record", "Record
Header"; https://kafka.apache.org/documentation/#recordbatch). The batch CRC (CRC-32C of
everything after the CRC field) is checked; a batch cut short at the end of the fetched
bytes is left for the next fetch, as Kafka's clients do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kafka import codec
from kafka.record.util import calc_crc32c

__all__ = ["RawRecord", "RecordBatchError", "read_batches"]

# baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8, crc uint32,
# attributes int16, lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64,
# producerId int64, producerEpoch int16, baseSequence int32, records count int32
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_FROM = 21  # the attributes field: the CRC covers the batch from here to its end
_CONTROL = 0x20
_COMPRESSION: dict[int, Callable[[bytes], bytes]] = {
    1: codec.gzip_decode, 2: codec.snappy_decode, 3: codec.lz4_decode, 4: codec.zstd_decode,
}


class RecordBatchError(ValueError):
    """The bytes are not a well-formed v2 record batch (the message says where)."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the projector reads it (a ``protocolo.core.kafka_client.ConsumedRecord``),
    header keys as the bytes on the log."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes | None]]
    batch_end: int  # the offset after its batch's last one

    def header_keys_are_text(self) -> bool:
        try:
            for key, _ in self.headers:
                key.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


def read_batches(data: bytes, partition: int) -> Iterator[RawRecord]:
    """Every record of the complete v2 batches in ``data`` (control batches skipped)."""
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return  # a partial batch at the end of a fetch
        if length < _HEADER.size - 12:
            raise RecordBatchError(f"batch at offset {base_offset}: length {length} is too short")
        (_, _, _, magic, crc, attributes, last_delta, base_ts, _, _, _, _, count) = _HEADER.unpack_from(data, pos)
        if magic != 2:
            raise RecordBatchError(f"batch at offset {base_offset}: magic {magic}, only v2 is read here")
        if calc_crc32c(memoryview(data)[pos + _CRC_FROM:end]) != crc:
            raise RecordBatchError(f"batch at offset {base_offset}: CRC-32C mismatch")
        body = data[pos + _HEADER.size:end]
        pos = end
        if attributes & _CONTROL:
            continue
        codec_id = attributes & 0x07
        if codec_id:
            if codec_id not in _COMPRESSION:
                raise RecordBatchError(f"batch at offset {base_offset}: unknown compression {codec_id}")
            body = _COMPRESSION[codec_id](body)
        yield from _records(body, count, partition, base_offset, base_ts, base_offset + last_delta + 1)


def _records(body: bytes, count: int, partition: int, base_offset: int, base_ts: int,
             batch_end: int) -> Iterator[RawRecord]:
    reader = _Reader(body)
    for _ in range(count):
        length = reader.varint()
        end = reader.pos + length
        reader.byte()  # attributes: unused
        ts_delta, offset_delta = reader.varint(), reader.varint()
        key, value = reader.nullable_bytes(), reader.nullable_bytes()
        headers = []
        for _ in range(reader.varint()):
            h_key = reader.nullable_bytes()
            if h_key is None:
                raise RecordBatchError(f"record at offset {base_offset + offset_delta}: a null header key")
            headers.append((h_key, reader.nullable_bytes()))
        if reader.pos != end:
            raise RecordBatchError(f"record at offset {base_offset + offset_delta}: length {length} "
                                   f"does not match its fields")
        yield RawRecord(partition, base_offset + offset_delta, base_ts + ts_delta, key, value, headers, batch_end)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise RecordBatchError("record cut short")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        """A zig-zag varint (protobuf's encoding, as the record format uses)."""
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise RecordBatchError("varint longer than 10 bytes")

    def nullable_bytes(self) -> bytes | None:
        length = self.varint()
        if length < 0:
            return None
        if self.pos + length > len(self.data):
            raise RecordBatchError("record field cut short")
        self.pos += length
        return bytes(self.data[self.pos - length:self.pos])
