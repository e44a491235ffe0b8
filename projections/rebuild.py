"""Rebuilding the views from the journal.

The journal is the evidence; views are conveniences. A rebuild empties every view table
and re-applies the same set-based view statements the projector uses, over the whole
journal as one batch, in one transaction: readers see the old views until the new ones
are complete. Because the statements do not depend on how the log was cut into batches,
the rebuilt views equal the live ones (a test proves it).

The journal is locked against writes for the duration, so a projector running meanwhile
waits instead of applying a batch to half-rebuilt views.
"""

from __future__ import annotations

import psycopg

from .journal import STAGING_COLUMNS, ensure_staging
from .views import VIEW_TABLES, apply_views, install_profiles


def rebuild_views(conn: psycopg.Connection) -> int:
    """Rebuild every view from the journal; return the number of events re-applied."""
    ensure_staging(conn)
    with conn.transaction(), conn.cursor() as cur:
        # First lock, and the only order that cannot deadlock with a projector: a batch
        # takes the journal before any view, so waiting here for its commit and making
        # the next batch wait at its journal insert leaves every view to the rebuild.
        # SHARE ROW EXCLUSIVE also keeps two rebuilds apart.
        cur.execute("LOCK TABLE journal IN SHARE ROW EXCLUSIVE MODE")
        install_profiles(conn)
        cur.execute(f"TRUNCATE {', '.join(VIEW_TABLES)}")
        cur.execute(
            f"INSERT INTO batch_events ({', '.join(STAGING_COLUMNS)}, is_duplicate)"
            f" SELECT {', '.join(STAGING_COLUMNS)}, is_duplicate FROM journal"
        )
        applied = cur.rowcount
        apply_views(cur)
        cur.execute("TRUNCATE batch_events")
    return applied


def recompute_views_in_scratch(conn: psycopg.Connection) -> dict[str, str]:
    """Recompute every view from the journal into session-private scratch tables, for
    comparison with the stored views; return ``{view table: schema of the stored table}``.

    The scratch tables are temporary tables named like the views (``LIKE ... INCLUDING
    ALL``: same columns, defaults and keys), so the projector's own statements, which name
    their tables unqualified, write them instead (``pg_temp`` comes first in the search
    path); ``batch_events`` is a temporary view of the whole journal, so the journal is
    not copied. Nothing outside the session is written: the caller's transaction is meant
    to be rolled back. The result equals a rebuild (:func:`rebuild_views`) without
    touching the stored views.
    """
    with conn.cursor() as cur:
        schemas: dict[str, str] = {}
        for table in (*VIEW_TABLES, "journal"):
            row = cur.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE c.oid = to_regclass(%s)", (table,)).fetchone()
            if row is None:
                raise LookupError(f"the ledger has no table {table}")
            schemas[table] = str(row[0])
        for table in VIEW_TABLES:
            cur.execute(f'CREATE TEMP TABLE {table} (LIKE "{schemas[table]}".{table} INCLUDING ALL)'
                        " ON COMMIT DROP")
        cur.execute(f"CREATE TEMP VIEW batch_events AS SELECT {', '.join(STAGING_COLUMNS)}, is_duplicate"
                    f' FROM "{schemas["journal"]}".journal')
        apply_views(cur)
    return {table: schemas[table] for table in VIEW_TABLES}
