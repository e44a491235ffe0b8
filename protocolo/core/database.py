"""PostgreSQL connections and schema migrations, for every layer.

Each layer owns its tables and keeps its migrations beside its code: the projections
(``protocolo.projections``: journal, views, offsets) and the producers
(``protocolo.producers``: the protocol-number sequence, the personal-data key vault).
A :class:`MigrationSet` names one such folder; :func:`migrate` applies the files of a set
that have not run yet, once each, in order, inside one transaction that also records
them in ``schema_migrations``. An advisory lock serialises concurrent starters (two
projectors, a publisher and a projector), so exactly one applies each file.

Migrations are append-only. ``schema_migrations`` keeps the SHA-256 of each file's bytes
as applied (what ``sha256sum`` prints), and every start compares them with the files: a
migration edited after it ran would leave ledgers that ran the old text without the change
and nothing would say so, so a start that finds one refuses (:class:`MigrationEdited`)
before it applies or records anything. Rows recorded before checksums were kept get the
file's checksum the first time a runner that keeps them starts; from then on they are
checked like the others.

Migration names are recorded as ``<owner>/<file>``, except the projections' own, which
keep their bare file names (``0001_ledger.sql``) as recorded by ledgers created before
the producers' tables moved to a set of their own.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

__all__ = ["EditedMigration", "Migration", "MigrationEdited", "MigrationSet", "SchemaMissing", "connect",
           "migrate", "migration_files", "require_schema"]

log = logging.getLogger(__name__)

_LOCK_ID = 0x70726F746F  # "proto"


class SchemaMissing(RuntimeError):
    """A reader found a database without the tables it reads (not a Protocolo ledger yet)."""


@dataclass(frozen=True)
class MigrationSet:
    """The migrations a layer owns: ``<package>/migrations/*.sql``."""

    owner: str
    package: str
    bare_names: bool = False

    def recorded_name(self, file_name: str) -> str:
        return file_name if self.bare_names else f"{self.owner}/{file_name}"


@dataclass(frozen=True)
class Migration:
    """One migration file: its name in ``schema_migrations``, where it is, its SQL and the
    SHA-256 (hex) of its bytes."""

    name: str
    path: str
    sql: str
    sha256: str


@dataclass(frozen=True)
class EditedMigration:
    """An applied migration whose file no longer has the bytes that were applied."""

    name: str
    path: str
    applied_sha256: str
    file_sha256: str


class MigrationEdited(RuntimeError):
    """A start found applied migrations whose files were edited since; nothing was done."""

    def __init__(self, database: str, edited: Sequence[EditedMigration]) -> None:
        files = "; ".join(f"{e.name} ({e.path}) was applied with SHA-256 {e.applied_sha256}, "
                          f"the file now has {e.file_sha256}" for e in edited)
        super().__init__(
            f"{database}: {len(edited)} migration file(s) changed after they were applied: {files}. "
            "Migrations are append-only: this database ran the old text, so the edit never reached "
            "it (and would not reach any ledger that ran it). Nothing was applied or changed. Put "
            "the file back as it was applied and make the change in a new migration numbered "
            "after the last one; if nobody here edited it, the installed release changed a released "
            "migration: report it."
        )
        self.database, self.edited = database, tuple(edited)


def migration_files(migrations: MigrationSet) -> list[Migration]:
    """Every migration of the set, in order. The checksum is of the file's bytes, so that
    an operator can compare it with ``sha256sum``."""
    folder = resources.files(migrations.package).joinpath("migrations")
    found = []
    for name in sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql")):
        data = folder.joinpath(name).read_bytes()
        found.append(Migration(migrations.recorded_name(name), str(folder.joinpath(name)),
                               data.decode("utf-8"), hashlib.sha256(data).hexdigest()))
    return found


def migrate(conn: psycopg.Connection[Any], *sets: MigrationSet) -> list[str]:
    """Apply the pending migrations of ``sets`` (in that order); return the names applied now.

    Raises :class:`MigrationEdited`, having changed nothing, when an applied migration's
    file differs from what was applied."""
    files = [m for migrations in sets for m in migration_files(migrations)]
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        _bootstrap(conn)
        recorded: dict[str, str | None] = dict(conn.execute("SELECT name, sha256 FROM schema_migrations"))
        edited = [EditedMigration(m.name, m.path, applied, m.sha256) for m in files
                  if (applied := recorded.get(m.name)) is not None and applied != m.sha256]
        if edited:
            raise MigrationEdited(_database_name(conn), edited)
        unchecked = [m for m in files if m.name in recorded and recorded[m.name] is None]
        for m in unchecked:  # applied before checksums were kept: trust the file this once
            conn.execute("UPDATE schema_migrations SET sha256 = %s WHERE name = %s", (m.sha256, m.name))
        if unchecked:
            log.info("recorded the checksums of %d migration(s) applied before checksums were kept",
                     len(unchecked))
        for m in files:
            if m.name not in recorded:
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES (%s, %s)", (m.name, m.sha256))
                applied_now.append(m.name)
    return applied_now


def _bootstrap(conn: psycopg.Connection[Any]) -> None:
    """The runner's own table, with its checksum column (added to a table made before it
    existed; only when missing, so a start takes no table lock when there is nothing to do)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),"
        " sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'))"
    )
    has_column = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass"
        " AND attname = 'sha256' AND NOT attisdropped)").fetchone()
    if not (has_column and has_column[0]):
        conn.execute("ALTER TABLE schema_migrations ADD COLUMN sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$')")


def _database_name(conn: psycopg.Connection[Any]) -> str:
    """Which database, for a message: name, host (or socket directory) and port, never a password."""
    info = conn.info
    return f"PostgreSQL database {info.dbname!r} at {info.host}:{info.port}"


def connect(database_url: str, *sets: MigrationSet, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection and bring the sets' tables up to date; never leaks the connection."""
    conn = psycopg.connect(database_url, **kwargs)
    try:
        migrate(conn, *sets)
    except BaseException:
        conn.close()
        raise
    return conn


def require_schema(conn: psycopg.Connection[Any], table: str, what: str) -> None:
    """Readers never create or migrate anything: fail clearly when ``table`` is absent."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.autocommit:
        conn.rollback()
    if not found or not found[0]:
        raise SchemaMissing(f"{what} has no table {table!r}: it is not a Protocolo ledger "
                            "(nothing was projected into it yet)")
