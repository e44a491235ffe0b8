"""PostgreSQL connections and schema migrations, for every layer.

Each layer owns its tables and keeps its migrations beside its code: the projections
(``protocolo.projections``: journal, views, offsets) and the producers
(``protocolo.producers``: the protocol-number sequence, the personal-data key vault).
A :class:`MigrationSet` names one such folder; :func:`migrate` applies the files of a set
that have not run yet, once each, in order, inside one transaction that also records
them in ``schema_migrations``. An advisory lock serialises concurrent starters (two
projectors, a publisher and a projector), so exactly one applies each file.

Migration names are recorded as ``<owner>/<file>``, except the projections' own, which
keep their bare file names (``0001_ledger.sql``) as recorded by ledgers created before
the producers' tables moved to a set of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

__all__ = ["MigrationSet", "SchemaMissing", "connect", "migrate", "migration_files", "require_schema"]

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


def migration_files(migrations: MigrationSet) -> list[tuple[str, str]]:
    """``(recorded name, SQL)`` of every migration of the set, in order."""
    folder = resources.files(migrations.package).joinpath("migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(migrations.recorded_name(name), folder.joinpath(name).read_text(encoding="utf-8"))
            for name in files]


def migrate(conn: psycopg.Connection[Any], *sets: MigrationSet) -> list[str]:
    """Apply the pending migrations of ``sets`` (in that order); return the names applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for migrations in sets:
            for name, sql in migration_files(migrations):
                if name in done:
                    continue
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied_now.append(name)
    return applied_now


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
