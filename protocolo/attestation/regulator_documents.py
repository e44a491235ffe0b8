"""Where the exports and reports made for a regulator live, so its users can find them.

The command line records each export directory and report file it writes for a regulator
(``protocolo export --regulator``, ``protocolo report --regulator``); the API lists and
serves them to that regulator's users only, and lets them pull the proof bundle of a
contact a report given to them names (``reported_contact``): the scope of a regulator is
what it was given, never the ledger at large.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

EXPORT_MEDIA_TYPE = "application/x-tar"
REPORT_MEDIA_TYPES = {"html": "text/html; charset=utf-8", "json": "application/json",
                      "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@dataclass(frozen=True)
class RegulatorDocument:
    document_id: str
    kind: str            # export | report
    regulator: str
    export_id: str       # the export itself, or the report's evidence
    location: Path
    media_type: str
    made_by: str
    made_at: datetime

    @property
    def file_name(self) -> str:
        return self.location.name + (".tar" if self.kind == "export" else "")

    def as_json(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "kind": self.kind, "regulator": self.regulator,
                "export_id": self.export_id, "file_name": self.file_name,
                "media_type": self.media_type, "made_by": self.made_by,
                "made_at": self.made_at.isoformat()}


_COLUMNS = "document_id, kind, regulator, export_id, location, media_type, made_by, made_at"


def _document(row: tuple[Any, ...]) -> RegulatorDocument:
    return RegulatorDocument(row[0], row[1], row[2], row[3], Path(row[4]), row[5], row[6], row[7])


def record_export(conn: psycopg.Connection[Any], export_id: str, regulator: str, directory: Path,
                  made_by: str) -> None:
    conn.execute(
        f"INSERT INTO regulator_documents ({_COLUMNS}) VALUES (%s, 'export', %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (document_id) DO UPDATE SET location = EXCLUDED.location, made_at = now()",
        (export_id, regulator, export_id, str(directory.resolve()), EXPORT_MEDIA_TYPE, made_by))


def record_report(conn: psycopg.Connection[Any], report: Path, report_format: str, export_id: str,
                  regulator: str, made_by: str, protocols: set[str]) -> str:
    """Record the report file and the contacts it names; returns its document id."""
    document_id = "report-" + hashlib.sha256(report.read_bytes()).hexdigest()[:32]
    with conn.transaction():
        conn.execute(
            f"INSERT INTO regulator_documents ({_COLUMNS}) VALUES (%s, 'report', %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (document_id) DO UPDATE SET location = EXCLUDED.location",
            (document_id, regulator, export_id, str(report.resolve()), REPORT_MEDIA_TYPES[report_format],
             made_by))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO regulator_report_contacts (document_id, protocol_number)"
                            " VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            [(document_id, p) for p in sorted(protocols)])
    return document_id


def reported_protocols(report: Any) -> set[str]:
    """Every protocol number a compliance report (its JSON form) names as evidence."""
    found: set[str] = set()
    stack = [report]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            number = item.get("protocol_number")
            if isinstance(number, str) and number:
                found.add(number)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def documents_for(conn: psycopg.Connection[Any], regulator: str | None) -> list[RegulatorDocument]:
    """A regulator's documents, newest first; every regulator's when ``regulator`` is None."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM regulator_documents WHERE %(r)s::text IS NULL OR regulator = %(r)s"
        " ORDER BY made_at DESC, document_id", {"r": regulator}).fetchall()
    return [_document(r) for r in rows]


def document_of(conn: psycopg.Connection[Any], regulator: str, document_id: str) -> RegulatorDocument | None:
    """The document if it was made for ``regulator`` (another's is as absent as an unknown one)."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM regulator_documents WHERE document_id = %s"
                       " AND regulator = %s", (document_id, regulator)).fetchone()
    return None if row is None else _document(row)


def reported_contact(conn: psycopg.Connection[Any], regulator: str, protocol_number: str) -> bool:
    """Whether a report made for ``regulator`` names the contact."""
    row = conn.execute(
        "SELECT 1 FROM regulator_report_contacts c JOIN regulator_documents d USING (document_id)"
        " WHERE d.regulator = %s AND c.protocol_number = %s LIMIT 1", (regulator, protocol_number)).fetchone()
    return row is not None


def export_archive(directory: Path) -> Iterator[bytes]:
    """The export directory as an uncompressed tar stream (sorted names, fixed metadata), in
    chunks: memory stays bounded whatever the export's size."""
    import tarfile

    class _Sink:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.chunks.append(bytes(data))
            return len(data)

    sink = _Sink()
    root = directory.name
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{root}/{path.relative_to(directory).as_posix()}")
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
            yield from sink.chunks
            sink.chunks.clear()
    yield from sink.chunks


@dataclass(frozen=True)
class ChainLink:
    """One export in its regulator's chain (the ``exports`` table, as signed)."""
    export_id: str
    regulator: str
    period_from: datetime
    period_to: datetime
    created_at: datetime
    records: int
    manifest_sha256: str
    previous_sha256: str | None
    requested_by: str


def export_chain(conn: psycopg.Connection[Any], limit: int = 200) -> list[ChainLink]:
    """Every regulator's exports, newest first within each regulator."""
    rows = conn.execute(
        "SELECT export_id, regulator, period_from, period_to, created_at, records, manifest_sha256,"
        " previous_sha256, requested_by FROM exports ORDER BY regulator, created_at DESC, recorded_at DESC"
        " LIMIT %s", (limit,)).fetchall()
    return [ChainLink(*row) for row in rows]
