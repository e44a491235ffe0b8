"""``data.avro``'s records encoded by hand into the object container's blocks.

fastavro's ``Writer.write`` spent about 19 µs per export record here, resolving each union
branch by inspecting the value; the export record's schema is fixed (docs/export-format.md
§3), so its binary encoding is a dozen appends: zig-zag varints for ``int``/``long`` and for
every length and count, union branch 0 (null) or 1, arrays as one block of items then 0.

The bytes are those fastavro writes (a test compares the two on hostile records): the
header is fastavro's own (its ``Writer`` writes it when made), and blocks are cut the same
way, a block closed after the record that takes its data to ``sync_interval`` bytes or
more, each written as count, byte length, data and the sync marker (codec ``null``).
"""

from __future__ import annotations

from typing import Any, BinaryIO

from fastavro.write import Writer

from protocolo.attestation.export_rendering import PARSED_RECORD_SCHEMA

SYNC_INTERVAL = 16_000  # fastavro's default (1000 x the sync marker's 16 bytes)

_NULL = b"\x00"
_SOME = b"\x02"  # union branch 1 (zig-zag of 1)
_END = b"\x00"  # an empty array, or the end of an array's one block


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def avro_long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then 7 bits per byte, low first (lengths and offsets mostly
    take one to four bytes, written without the loop)."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(data: bytes) -> bytes:
    return avro_long(len(data)) + data


def _optional_bytes(data: bytes | None) -> bytes:
    return _NULL if data is None else _SOME + avro_long(len(data)) + data


def _optional_string(text: str | None) -> bytes:
    return _NULL if text is None else _SOME + _bytes(text.encode("utf-8"))


def encode_record(prefix: bytes, record: dict[str, Any]) -> bytes:
    """One export record's datum; ``prefix`` is :func:`record_prefix` of its topic and
    partition."""
    timestamp = record["timestamp"]
    parts = [prefix, avro_long(record["offset"]), avro_long(record["leaf_index"]),
             _NULL if timestamp is None else _SOME + avro_long(timestamp),
             _optional_bytes(record["key"])]
    headers = record["headers"]
    if headers:
        parts.append(avro_long(len(headers)))
        parts += [_bytes(h["key"]) + _optional_bytes(h["value"]) for h in headers]
    value = record["value"]
    parts += [_END, avro_long(len(value)), value, _optional_string(record["quarantined"]),
              _optional_string(record["event_type"]), _optional_string(record["event"])]
    proof = record["inclusion_proof"]
    if proof:
        parts.append(avro_long(len(proof)))
        parts += [_bytes(h) for h in proof]
    parts.append(_END)
    return b"".join(parts)


def record_prefix(topic: str, partition: int) -> bytes:
    return _bytes(topic.encode("utf-8")) + avro_long(partition)


class RecordBlocks:
    """Writes ``data.avro``: fastavro's header, then the blocks of :func:`encode_record`."""

    def __init__(self, file: BinaryIO, topic: str, partition: int, sync_marker: bytes,
                 metadata: dict[str, str]) -> None:
        Writer(file, PARSED_RECORD_SCHEMA, sync_marker=sync_marker, metadata=metadata)  # the header
        self.file, self.sync_marker = file, sync_marker
        self.prefix = record_prefix(topic, partition)
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, record: dict[str, Any]) -> None:
        datum = encode_record(self.prefix, record)
        self.pending.append(datum)
        self.size += len(datum)
        if self.size >= SYNC_INTERVAL:
            self._dump()

    def _dump(self) -> None:
        self.file.write(b"".join((avro_long(len(self.pending)), avro_long(self.size), *self.pending,
                                  self.sync_marker)))
        self.pending, self.size = [], 0

    def flush(self) -> None:
        if self.pending:
            self._dump()
        self.file.flush()
