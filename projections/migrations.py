"""Schema migrations, applied automatically and idempotently.

Each ``migrations/NNNN_name.sql`` file runs once, in order, inside one transaction that
also records it in ``schema_migrations``. An advisory lock serialises concurrent starters
(two projectors, a publisher and a projector), so exactly one applies each file.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

_LOCK_ID = 0x70726F746F  # "proto"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files(__package__).joinpath("migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in files]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied_now.append(name)
    return applied_now


def connect(database_url: str, **kwargs: Any) -> psycopg.Connection:
    """Open a connection and bring the schema up to date (closed again if that fails)."""
    conn = psycopg.connect(database_url, **kwargs)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn
