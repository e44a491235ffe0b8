"""Every version of every event schema, by event type and by fingerprint.

Layout of the schema folder (bundled: ``schemas/avro``)::

    <EventType>/v<N>.avsc   one self-contained record protocolo.events.<EventType>,
                            first field ``meta`` (record protocolo.events.Meta)
    Meta.avsc               the current Meta record (checked by compatibility.py)

A schema file, once published, is never edited: its fingerprint is in records on Kafka
forever. Changes are new ``v<N+1>.avsc`` files, and readers always resolve into the
highest version of the event type, so consumers see one shape per event type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from .codec import (
    HEADER_SIZE,
    UnknownFingerprint,
    canonical_form,
    fingerprint_of_canonical_form,
    frame,
    read_body,
    split,
    write_body,
)

NAMESPACE = "protocolo.events"
META_FULL_NAME = f"{NAMESPACE}.Meta"
BUNDLED_ROOT = Path(__file__).parent / "avro"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class SchemaCatalogueError(Exception):
    """The schema folder breaks a layout rule; the message names the file."""


class UnknownEventType(KeyError):
    """No schema for this event type."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class UnknownSchemaVersion(KeyError):
    """The event type exists but not in this version."""

    def __str__(self) -> str:
        return str(self.args[0])


class EncodeError(ValueError):
    """A record does not fit the schema it is encoded with."""


@dataclass(frozen=True)
class SchemaVersion:
    """One ``<EventType>/v<N>.avsc`` file."""

    event_type: str
    version: int
    schema: dict[str, Any]
    """Parsed by ``fastavro.parse_schema``; pass it to fastavro as is."""
    canonical_form: str
    fingerprint: bytes
    """CRC-64-AVRO of ``canonical_form``, 8 bytes in wire order."""
    path: Path


@dataclass(frozen=True)
class Decoded:
    """One decoded record value."""

    event_type: str
    record: dict[str, Any]
    """Resolved into the *current* schema of ``event_type``, whatever version wrote it."""
    fingerprint: bytes
    writer_version: int


@dataclass(frozen=True)
class _ReadPlan:
    version: SchemaVersion
    reader_schema: dict[str, Any] | None  # None: writer is the current schema, no resolution
    what: str


class SchemaCatalogue:
    """Load with :meth:`load`; immutable afterwards, so safe to share between threads."""

    def __init__(self, root: Path, versions: list[SchemaVersion]) -> None:
        self.root = root
        self._versions: dict[str, dict[int, SchemaVersion]] = {}
        for sv in sorted(versions, key=lambda v: (v.event_type, v.version)):
            self._versions.setdefault(sv.event_type, {})[sv.version] = sv
        self._current = {et: vs[max(vs)] for et, vs in self._versions.items()}
        self._plans: dict[bytes, _ReadPlan] = {}
        for sv in versions:
            if sv.fingerprint in self._plans:
                other = self._plans[sv.fingerprint].version
                raise SchemaCatalogueError(
                    f"{sv.path} and {other.path} have the same fingerprint "
                    f"{sv.fingerprint.hex()}: identical canonical forms cannot be two versions"
                )
            current = self._current[sv.event_type]
            self._plans[sv.fingerprint] = _ReadPlan(
                version=sv,
                reader_schema=None if current is sv else current.schema,
                what=f"{sv.event_type} v{sv.version} (fingerprint {sv.fingerprint.hex()})",
            )

    @classmethod
    def load(cls, root: Path | None = None) -> SchemaCatalogue:
        """Load and check every ``<EventType>/v<N>.avsc`` under ``root`` (default: bundled)."""
        root = BUNDLED_ROOT if root is None else Path(root)
        if not root.is_dir():
            raise SchemaCatalogueError(f"schema folder {root} does not exist")
        versions = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name.startswith((".", "_")):
                continue
            for path in sorted(folder.glob("*.avsc")):
                versions.append(_load_file(folder.name, path))
        if not versions:
            raise SchemaCatalogueError(f"no <EventType>/v<N>.avsc files under {root}")
        return cls(root, versions)

    def event_types(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, event_type: str) -> list[SchemaVersion]:
        """All versions of ``event_type``, oldest first."""
        return list(self._of(event_type).values())

    def current(self, event_type: str) -> SchemaVersion:
        self._of(event_type)
        return self._current[event_type]

    def version(self, event_type: str, n: int) -> SchemaVersion:
        versions = self._of(event_type)
        try:
            return versions[n]
        except KeyError:
            raise UnknownSchemaVersion(
                f"{event_type} has no version {n} (known: {sorted(versions)})"
            ) from None

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._plans[bytes(fp)].version
        except KeyError:
            raise UnknownFingerprint(fp) from None

    def schema_json(self, event_type: str, version: int) -> str:
        """The self-contained schema text of one version, for other-language producers.

        This is the committed file, byte for byte (docs included); its Parsing Canonical
        Form is what the fingerprint is computed over.
        """
        return self.version(event_type, version).path.read_text(encoding="utf-8")

    def encode(self, event_type: str, record: dict[str, Any], version: int | None = None) -> bytes:
        """Single-object encode ``record`` as ``event_type`` (current version by default)."""
        sv = self.current(event_type) if version is None else self.version(event_type, version)
        try:
            body = write_body(sv.schema, record)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise EncodeError(f"cannot encode {event_type} v{sv.version}: {exc}") from exc
        return frame(sv.fingerprint, body)

    def decode(self, data: bytes | bytearray | memoryview) -> Decoded:
        """Decode a record value written with any known version.

        Raises :class:`~protocolo.schemas.codec.MalformedRecord` (bad header, truncated body,
        trailing bytes, body not matching its schema) or
        :class:`~protocolo.schemas.codec.UnknownFingerprint`.
        """
        fp, _ = split(data)
        plan = self._plans.get(fp)
        if plan is None:
            raise UnknownFingerprint(fp)
        sv = plan.version
        record = read_body(data, sv.schema, plan.reader_schema, start=HEADER_SIZE, what=plan.what)
        return Decoded(sv.event_type, record, fp, sv.version)

    def _of(self, event_type: str) -> dict[int, SchemaVersion]:
        try:
            return self._versions[event_type]
        except KeyError:
            raise UnknownEventType(
                f"unknown event type {event_type!r} (known: {', '.join(self.event_types())})"
            ) from None


def _load_file(event_type: str, path: Path) -> SchemaVersion:
    match = _VERSION_FILE.match(path.name)
    if match is None:
        raise SchemaCatalogueError(f"{path}: schema files are named v<N>.avsc (N = 1, 2, ...)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaCatalogueError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaCatalogueError(f"{path}: the top-level schema must be a record")
    try:
        # Each file is parsed on its own: it must be self-contained.
        parsed = parse_schema(raw)
    except Exception as exc:
        raise SchemaCatalogueError(f"{path}: not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):  # a record in, a record out; said for the type checker
        raise SchemaCatalogueError(f"{path}: the top-level schema must be a record")
    expected = f"{NAMESPACE}.{event_type}"
    if parsed["name"] != expected:
        raise SchemaCatalogueError(
            f"{path}: record full name is {parsed['name']!r}, expected {expected!r} "
            "(the folder name is the event type)"
        )
    fields = parsed["fields"]
    first_type = fields[0]["type"] if fields else None
    if not fields or fields[0]["name"] != "meta":
        raise SchemaCatalogueError(f"{path}: the first field must be 'meta'")
    if not (isinstance(first_type, dict) and first_type.get("name") == META_FULL_NAME):
        raise SchemaCatalogueError(f"{path}: field 'meta' must be the record {META_FULL_NAME}")
    canonical = canonical_form(parsed)
    return SchemaVersion(
        event_type=event_type,
        version=int(match.group(1)),
        schema=parsed,
        canonical_form=canonical,
        fingerprint=fingerprint_of_canonical_form(canonical),
        path=path,
    )
