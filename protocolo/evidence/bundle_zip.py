"""The proof-of-service bundle's container: a canonical, uncompressed ZIP (PKWARE APPNOTE 6.3).

One byte layout per list of files, so the same files always give the same bytes and any
byte changed anywhere in the container is noticed: the verifier re-encodes the entries it
read and requires the result to equal the file it was given (``zip-not-canonical``).

Canonical form (all integers little-endian, as ZIP requires):

* entries in the order given by the writer (sorted by UTF-8 name), each a local file header
  then the data, stored (method 0), no data descriptor, no extra field;
* local header: ``50 4b 03 04``, version needed 20, flags 0x0800 (UTF-8 names), method 0,
  time 0 and date 0x0021 (1980-01-01 00:00), CRC-32, size, size, name length, extra 0, name;
* central directory, one header per entry in the same order: ``50 4b 01 02``, version made
  by 0x0314 (UNIX, 2.0), version needed 20, flags 0x0800, method 0, time 0, date 0x0021,
  CRC-32, size, size, name length, extra 0, comment 0, disk 0, internal attributes 0,
  external attributes ``0o100644 << 16``, offset of the local header, name;
* end of central directory: ``50 4b 05 06``, disk 0, disk 0, entries, entries, size and
  offset of the central directory, comment length 0; nothing after it.

No ZIP64: a bundle holds fewer than 65,535 files and less than 4 GiB. Any ``unzip`` reads it.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence

from protocolo.evidence.errors import EvidenceError

LOCAL_SIGNATURE = 0x04034B50
CENTRAL_SIGNATURE = 0x02014B50
END_SIGNATURE = 0x06054B50
VERSION_NEEDED = 20
VERSION_MADE_BY = 0x0314
FLAG_UTF8 = 0x0800
DOS_DATE_1980 = 0x0021
EXTERNAL_ATTRIBUTES = 0o100644 << 16
MAX_ENTRIES = 0xFFFE
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", re.ASCII)


class BundleFormatError(EvidenceError):
    """The bundle is not a bundle: its container or its manifest breaks the format."""


def check_name(name: str) -> None:
    """Entry names are relative paths of ``[A-Za-z0-9._-]`` segments, never ``.`` or ``..``."""
    if not _SAFE_NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
        raise BundleFormatError("zip-unsafe-name", f"entry name {name[:80]!r} is not a plain relative path")


def write_zip(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """The canonical ZIP of ``entries`` (name, data), in the order given."""
    if len(entries) > MAX_ENTRIES:
        raise BundleFormatError("zip-too-large", f"{len(entries)} entries; at most {MAX_ENTRIES}")
    body = bytearray()
    central = bytearray()
    seen: set[str] = set()
    for name, data in entries:
        check_name(name)
        if name in seen:
            raise BundleFormatError("zip-duplicate-name", f"entry {name!r} appears twice")
        seen.add(name)
        raw_name = name.encode("ascii")
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(body)
        body += _LOCAL.pack(LOCAL_SIGNATURE, VERSION_NEEDED, FLAG_UTF8, 0, 0, DOS_DATE_1980,
                            crc, len(data), len(data), len(raw_name), 0)
        body += raw_name + data
        central += _CENTRAL.pack(CENTRAL_SIGNATURE, VERSION_MADE_BY, VERSION_NEEDED, FLAG_UTF8, 0, 0,
                                 DOS_DATE_1980, crc, len(data), len(data), len(raw_name), 0, 0, 0,
                                 0, EXTERNAL_ATTRIBUTES, offset)
        central += raw_name
    if len(body) + len(central) > 0xFFFFFFFF:
        raise BundleFormatError("zip-too-large", "a bundle must stay under 4 GiB")
    end = _END.pack(END_SIGNATURE, 0, 0, len(entries), len(entries), len(central), len(body), 0)
    return bytes(body + central + end)


def read_zip(data: bytes) -> list[tuple[str, bytes]]:
    """The entries of a bundle, in order, read from the local headers.

    Only the structure needed to find each entry's name and data is trusted here; the caller
    then compares :func:`write_zip` of the result with ``data`` (:func:`is_canonical`), so a
    changed byte in any header, CRC, directory or padding is reported too.
    """
    entries: list[tuple[str, bytes]] = []
    position = 0
    names: set[str] = set()
    while len(data) - position >= 4 and struct.unpack_from("<I", data, position)[0] == LOCAL_SIGNATURE:
        if len(data) - position < _LOCAL.size:
            raise BundleFormatError("zip-truncated", f"local header at byte {position} is cut short")
        fields = _LOCAL.unpack_from(data, position)
        method, size, stored_size, name_length, extra_length = (
            fields[3], fields[7], fields[8], fields[9], fields[10])
        if method != 0 or size != stored_size:
            raise BundleFormatError("zip-compressed",
                                    f"entry at byte {position} is not stored (method {method})")
        start = position + _LOCAL.size
        end = start + name_length + extra_length + size
        if end > len(data):
            raise BundleFormatError("zip-truncated", f"entry at byte {position} runs past the end")
        try:
            name = data[start : start + name_length].decode("ascii")
        except UnicodeDecodeError:
            raise BundleFormatError("zip-unsafe-name", f"entry name at byte {start} is not ASCII") from None
        check_name(name)
        if name in names:
            raise BundleFormatError("zip-duplicate-name", f"entry {name!r} appears twice")
        names.add(name)
        entries.append((name, data[start + name_length + extra_length : end]))
        position = end
        if len(entries) > MAX_ENTRIES:
            raise BundleFormatError("zip-too-large", f"more than {MAX_ENTRIES} entries")
    if not entries:
        raise BundleFormatError("not-a-bundle", "not a ZIP file of stored entries (no local header at byte 0)")
    return entries


def first_difference(entries: Sequence[tuple[str, bytes]], data: bytes) -> int | None:
    """The first byte where ``data`` differs from the canonical ZIP of ``entries``, or None."""
    canonical = write_zip(entries)
    if canonical == data:
        return None
    for position, (a, b) in enumerate(zip(canonical, data, strict=False)):
        if a != b:
            return position
    return min(len(canonical), len(data))
