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
